//! SMS: the keyword rules every SMS provider shares, and one folder per provider.
//!
//! Providers: [`twilio`] (Twilio's Messaging webhooks and REST API). A second provider will sit
//! beside it with the same shape: `config`, webhook parsing, REST client.

pub mod keywords;
pub mod twilio;
