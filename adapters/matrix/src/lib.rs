//! Matrix application-service server and Client-Server client (being built: see the Matrix adapter issue).
