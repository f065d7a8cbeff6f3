//! `bridge-sim`: fake homeserver, fake Gitter, scenarios and load (being built: see the simulator issue).
