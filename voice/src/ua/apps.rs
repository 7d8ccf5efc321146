//! The routes' applications, parsed once: a route's `play:FILE.wav` or `menu:FILE.wav` is
//! read and decoded on the first call that needs it (on a blocking thread, never on the
//! async runtime), then every later call shares the decoded audio.
//!
//! The cache is keyed by the spec string and bounded ([`MAX_SPECS`]); when full it is
//! cleared rather than grown. A WAV changed on disk under the same name is picked up on the
//! next start (or after a clear); give a new prompt a new file name to switch at once.

use crate::app::{AppSpec, AppSpecError};
use std::collections::HashMap;
use std::sync::Mutex;

/// Distinct specs kept at most.
pub const MAX_SPECS: usize = 1024;

/// Parsed application specs by spec string.
#[derive(Debug, Default)]
pub struct AppCache {
    specs: Mutex<HashMap<String, AppSpec>>,
    /// The receptionist's engines, attached once at start-up.
    receptionist: std::sync::OnceLock<std::sync::Arc<crate::receptionist::Host>>,
}

impl AppCache {
    /// The parsed spec, from the cache or read now on a blocking thread.
    pub async fn get(&self, spec: &str) -> Result<AppSpec, AppSpecError> {
        if spec.trim() == "receptionist" {
            let host = self.receptionist.get().ok_or(AppSpecError::NoSpeech)?;
            return Ok(AppSpec::Receptionist(Some(std::sync::Arc::clone(host))));
        }
        if let Some(found) = self.lock().get(spec) {
            return Ok(found.clone());
        }
        let owned = spec.to_owned();
        let parsed = tokio::task::spawn_blocking(move || AppSpec::parse(&owned))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
        let mut specs = self.lock();
        if specs.len() >= MAX_SPECS {
            specs.clear();
        }
        specs.insert(spec.to_owned(), parsed.clone());
        Ok(parsed)
    }

    /// Attaches the receptionist's engines (the first attach wins).
    pub fn attach_receptionist(&self, host: std::sync::Arc<crate::receptionist::Host>) {
        if self.receptionist.set(host).is_err() {
            tracing::warn!("receptionist engines already attached; the new ones are ignored");
        }
    }

    /// How many specs are cached.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, AppSpec>> {
        self.specs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wav_is_read_once_then_served_from_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.wav");
        std::fs::write(&path, audio::wav::encode_wav(8000, 1, &[7; 160])).unwrap();
        let spec = format!("play:{}", path.display());
        let cache = AppCache::default();
        assert!(matches!(cache.get(&spec).await, Ok(AppSpec::Play(a)) if a.len() == 160));
        // Gone from disk: the next call still plays it (it was not read again).
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(cache.get(&spec).await, Ok(AppSpec::Play(_))));
        assert_eq!(cache.len(), 1);
        assert!(cache.get("nonsense").await.is_err());
        assert_eq!(cache.len(), 1, "errors are not cached");
    }

    #[tokio::test]
    async fn the_receptionist_needs_its_engines_attached() {
        let cache = AppCache::default();
        assert!(matches!(
            cache.get("receptionist").await,
            Err(AppSpecError::NoSpeech)
        ));
        // Parsed alone (as the CLI checks a route), it is known, without engines.
        assert!(matches!(
            AppSpec::parse("receptionist"),
            Ok(AppSpec::Receptionist(None))
        ));
    }
}
