//! Gitter REST client, streaming reader and OAuth2 code exchange (being built: see the Gitter adapter issue).
