//! The streaming API: one newline-delimited stream per room and token, heartbeats, and the
//! controls that drop or feed streams (docs/gitter-api.md §5).

use super::*;

impl GitterState {
    /// Open a stream of the room's new messages. Same auth and read
    /// permission as REST; the receiver gets one `<json>\n` line per new
    /// message. The HTTP layer adds the `" \n"` heartbeats.
    pub fn open_stream(
        &mut self,
        token: Option<&str>,
        room_id: &str,
    ) -> Result<(u64, mpsc::UnboundedReceiver<String>), ApiError> {
        self.open_sub(token, room_id)
    }

    pub(super) fn open_sub(
        &mut self,
        token: Option<&str>,
        room_id: &str,
    ) -> Result<(u64, mpsc::UnboundedReceiver<String>), ApiError> {
        let caller = self.authenticate(token)?;
        let room_id = self.load_room(&caller, room_id)?.id.clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.next_stream_id;
        self.next_stream_id += 1;
        self.streams.push(StreamSub {
            id,
            room_id,
            token: caller.token,
            tx,
        });
        Ok((id, rx))
    }

    /// Whether the stream `id` is still registered (the HTTP layer ends the
    /// response when it is not).
    pub fn stream_alive(&self, id: u64) -> bool {
        self.streams.iter().any(|s| s.id == id && !s.tx.is_closed())
    }

    /// Close every stream of `room_id` (or all streams): the client sees its
    /// response end, as after a server restart (§5.2). Dropping all streams also
    /// forgets every realtime client, as a restart of the Faye server would.
    pub fn drop_streams(&mut self, room_id: Option<&str>) -> usize {
        let before = self.streams.len();
        self.streams
            .retain(|s| room_id.is_some_and(|r| s.room_id != r));
        let forgotten = if room_id.is_none() {
            self.faye_forget_clients()
        } else {
            0
        };
        before - self.streams.len() + forgotten
    }

    /// Writes `line` (a `\n` is added) as is to every open stream of
    /// `room_id`, for tests of what a client does with a line that is not a
    /// message. Returns how many streams got it.
    pub fn stream_raw_line(&mut self, room_id: &str, line: &str) -> usize {
        let mut line = line.to_owned();
        line.push('\n');
        let mut sent = 0;
        self.streams.retain(|s| {
            if s.room_id != room_id {
                return true;
            }
            let ok = s.tx.send(line.clone()).is_ok();
            sent += usize::from(ok);
            ok
        });
        sent
    }

    /// Usernames whose tokens hold the open streams of `room_id`, in opening
    /// order (which Gitter user a client reads the room as), then those whose
    /// realtime clients subscribe to its messages.
    pub fn stream_readers(&self, room_id: &str) -> Vec<String> {
        let mut readers: Vec<String> = self
            .streams
            .iter()
            .filter(|s| s.is_chat() && s.room_id == room_id)
            .filter_map(|s| self.tokens.get(&s.token))
            .filter_map(|t| self.users.get(&t.user_id).map(|u| u.username.clone()))
            .collect();
        readers.extend(self.faye_readers(room_id));
        readers
    }

    /// Number of open message streams, optionally for one room.
    pub fn stream_count(&self, room_id: Option<&str>) -> usize {
        self.streams
            .iter()
            .filter(|s| s.is_chat() && room_id.is_none_or(|r| s.room_id == r))
            .count()
    }
}
