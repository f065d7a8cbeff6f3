//! redb persistence of the core's change sets and outbox (being built: see the store issue).
