//! A dialog as the UAS side sees it (RFC 3261 §12.1.1): built from the INVITE, it knows the
//! local and remote parties with their tags, the remote target (Contact), the route set
//! (Record-Route, in order) and the CSeq spaces, and writes in-dialog requests. Pure.

use crate::sip::message::Inbound;
use crate::sip::response::{build_request, has_tag, RequestParts};
use std::net::{IpAddr, SocketAddr};

/// The dialog state kept by one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    /// The INVITE's To, with our tag: our From in requests we send.
    pub local_party: String,
    /// The INVITE's From (with the caller's tag): our To in requests we send.
    pub remote_party: String,
    /// The caller's Contact URI: the request URI of what we send.
    pub remote_target: String,
    /// Record-Route entries in the order received (UAS keeps them unreversed).
    pub route_set: Vec<String>,
    pub local_cseq: u32,
    pub remote_cseq: u32,
}

/// Why a dialog could not be formed from an INVITE.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialogError {
    #[error("INVITE has no Contact")]
    MissingContact,
    #[error("INVITE has no {header}")]
    MissingHeader { header: &'static str },
}

impl Dialog {
    pub fn from_invite(invite: &Inbound, local_tag: &str) -> Result<Self, DialogError> {
        let head = &invite.head;
        let to = head
            .get("To")
            .ok_or(DialogError::MissingHeader { header: "To" })?;
        let from = head
            .get("From")
            .ok_or(DialogError::MissingHeader { header: "From" })?;
        let contact = head.get("Contact").ok_or(DialogError::MissingContact)?;
        let remote_target = uri_of(split_list(contact).first().map_or("", String::as_str));
        if remote_target.is_empty() {
            return Err(DialogError::MissingContact);
        }
        let local_party = if has_tag(to) {
            to.to_owned()
        } else {
            format!("{to};tag={local_tag}")
        };
        Ok(Self {
            call_id: invite.call_id.clone(),
            local_tag: local_tag.to_owned(),
            local_party,
            remote_party: from.to_owned(),
            remote_target,
            route_set: head.all("Record-Route").flat_map(split_list).collect(),
            local_cseq: 0,
            remote_cseq: invite.cseq,
        })
    }

    /// An in-dialog request must carry a higher CSeq than the last one (§12.2.2); a lower
    /// one is answered 500.
    pub fn accept_remote_cseq(&mut self, cseq: u32) -> bool {
        if cseq < self.remote_cseq {
            return false;
        }
        self.remote_cseq = cseq;
        true
    }

    /// Where a request we send goes first: the first route when there is a route set, the
    /// remote target otherwise; `fallback` (the INVITE's source) when that is not an IP.
    pub fn next_hop(&self, fallback: SocketAddr) -> SocketAddr {
        let first = self
            .route_set
            .first()
            .map(|r| uri_of(r))
            .unwrap_or_else(|| self.remote_target.clone());
        socket_of(&first).unwrap_or(fallback)
    }

    /// Writes the next in-dialog request (BYE, INFO, ...) with a fresh CSeq.
    pub fn request(
        &mut self,
        method: &str,
        transport: &str,
        sent_by: SocketAddr,
        branch: &str,
    ) -> Vec<u8> {
        self.request_with(method, transport, sent_by, branch, vec![], None)
    }

    /// Writes the next in-dialog request with extra headers and a body.
    pub fn request_with(
        &mut self,
        method: &str,
        transport: &str,
        sent_by: SocketAddr,
        branch: &str,
        headers: Vec<(&str, String)>,
        body: Option<(&str, &[u8])>,
    ) -> Vec<u8> {
        self.local_cseq += 1;
        build_request(&RequestParts {
            method,
            target: &self.remote_target,
            transport,
            sent_by,
            branch,
            from: &self.local_party,
            to: &self.remote_party,
            call_id: &self.call_id,
            cseq: self.local_cseq,
            routes: &self.route_set,
            headers,
            body,
        })
    }

    /// The dialog a UAC forms from the 2xx to its INVITE (§12.1.2): the route set is the
    /// 2xx's Record-Route reversed, the remote target its Contact.
    pub fn from_answer(
        ok: &Inbound,
        local_party: String,
        local_tag: &str,
        invite_cseq: u32,
    ) -> Result<Self, DialogError> {
        let head = &ok.head;
        let to = head
            .get("To")
            .ok_or(DialogError::MissingHeader { header: "To" })?;
        let contact = head.get("Contact").ok_or(DialogError::MissingContact)?;
        let remote_target = uri_of(split_list(contact).first().map_or("", String::as_str));
        if remote_target.is_empty() {
            return Err(DialogError::MissingContact);
        }
        let mut route_set: Vec<String> = head.all("Record-Route").flat_map(split_list).collect();
        route_set.reverse();
        Ok(Self {
            call_id: ok.call_id.clone(),
            local_tag: local_tag.to_owned(),
            local_party,
            remote_party: to.to_owned(),
            remote_target,
            route_set,
            local_cseq: invite_cseq,
            remote_cseq: 0,
        })
    }
}

/// Splits a header value holding a comma-separated list, ignoring commas inside `<>` and
/// quotes.
pub fn split_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0);
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => depth += 1,
            '>' if !quoted => depth -= 1,
            ',' if !quoted && depth <= 0 => {
                out.push(value[start..i].trim().to_owned());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[start..].trim().to_owned());
    out.retain(|s| !s.is_empty());
    out
}

/// The URI of a name-addr (`"x" <sip:..>;p`) or addr-spec (`sip:..;p`) value.
pub fn uri_of(value: &str) -> String {
    match (value.find('<'), value.find('>')) {
        (Some(open), Some(close)) if open < close => value[open + 1..close].trim().to_owned(),
        _ => value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned(),
    }
}

/// The socket address of a SIP URI whose host is an IP literal (port 5060 when absent).
pub fn socket_of(uri: &str) -> Option<SocketAddr> {
    let parsed = rsip::Uri::try_from(uri).ok()?;
    let ip: IpAddr = match parsed.host() {
        rsip::Host::IpAddr(ip) => *ip,
        rsip::Host::Domain(d) => d.to_string().parse().ok()?,
    };
    let port = parsed.port().map_or(5060, |p| *p.value());
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::framing::{frame_datagram, FrameLimits};
    use crate::sip::message::parse;

    const INVITE: &str = "INVITE sip:100@127.0.0.1 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.3:5060;branch=z9hG4bK-p\r\n\
        Via: SIP/2.0/UDP 127.0.0.9:5070;branch=z9hG4bK-1\r\n\
        Record-Route: <sip:127.0.0.3:5060;lr>, <sip:127.0.0.4;lr>\r\n\
        From: \"A, B\" <sip:a@127.0.0.9>;tag=1\r\n\
        To: <sip:100@127.0.0.1>\r\n\
        Contact: \"A\" <sip:a@127.0.0.9:5070;transport=udp>;expires=60\r\n\
        Call-ID: c9\r\n\
        CSeq: 7 INVITE\r\n\r\n";

    fn invite(text: &str) -> Inbound {
        parse(frame_datagram(text.as_bytes(), &FrameLimits::default()).unwrap()).unwrap()
    }

    #[test]
    fn behind_a_proxy_requests_go_to_the_first_route_with_the_route_set() {
        let mut d = Dialog::from_invite(&invite(INVITE), "us").unwrap();
        assert_eq!(d.remote_target, "sip:a@127.0.0.9:5070;transport=udp");
        assert_eq!(
            d.route_set,
            ["<sip:127.0.0.3:5060;lr>", "<sip:127.0.0.4;lr>"]
        );
        let fallback: SocketAddr = "127.0.0.200:1".parse().unwrap();
        assert_eq!(d.next_hop(fallback), "127.0.0.3:5060".parse().unwrap());
        let bye = String::from_utf8(d.request(
            "BYE",
            "UDP",
            "127.0.0.1:5060".parse().unwrap(),
            "z9hG4bK-x",
        ))
        .unwrap();
        assert!(bye.starts_with("BYE sip:a@127.0.0.9:5070;transport=udp SIP/2.0\r\n"));
        assert!(bye.contains("From: <sip:100@127.0.0.1>;tag=us\r\n"));
        assert!(bye.contains("To: \"A, B\" <sip:a@127.0.0.9>;tag=1\r\n"));
        assert!(bye.contains("Route: <sip:127.0.0.3:5060;lr>\r\nRoute: <sip:127.0.0.4;lr>\r\n"));
        assert!(bye.contains("CSeq: 1 BYE\r\n"));
    }

    #[test]
    fn without_a_route_set_requests_go_to_the_contact() {
        let text = INVITE.replace(
            "Record-Route: <sip:127.0.0.3:5060;lr>, <sip:127.0.0.4;lr>\r\n",
            "",
        );
        let d = Dialog::from_invite(&invite(&text), "us").unwrap();
        let fallback: SocketAddr = "127.0.0.200:1".parse().unwrap();
        assert_eq!(d.next_hop(fallback), "127.0.0.9:5070".parse().unwrap());
        let named = text.replace("a@127.0.0.9:5070", "a@pbx.example");
        let d = Dialog::from_invite(&invite(&named), "us").unwrap();
        assert_eq!(d.next_hop(fallback), fallback);
    }

    #[test]
    fn remote_cseq_must_not_go_back() {
        let mut d = Dialog::from_invite(&invite(INVITE), "us").unwrap();
        assert!(d.accept_remote_cseq(8));
        assert!(!d.accept_remote_cseq(7));
    }

    #[test]
    fn missing_contact_is_an_error() {
        let text = INVITE.replace(
            "Contact: \"A\" <sip:a@127.0.0.9:5070;transport=udp>;expires=60\r\n",
            "",
        );
        assert_eq!(
            Dialog::from_invite(&invite(&text), "us"),
            Err(DialogError::MissingContact)
        );
    }
}
