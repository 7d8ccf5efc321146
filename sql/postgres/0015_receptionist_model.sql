-- An org's receptionist may answer through a remote OpenAI-compatible chat model (issue 10):
-- its endpoint URL ('' or NULL: the local responder), model name and bearer key (sealed like
-- provider credentials, see gateway/src/secrets.rs).
ALTER TABLE receptionist_settings ADD COLUMN responder_url TEXT;
ALTER TABLE receptionist_settings ADD COLUMN responder_model TEXT;
ALTER TABLE receptionist_settings ADD COLUMN responder_key TEXT;
