//! The id of the request being answered: made by the request layer, quoted in the
//! span, the log line, the `x-request-id` header and every error body.

tokio::task_local! {
    /// The id of the request this task is answering; error bodies quote it.
    pub(super) static REQUEST_ID: RequestId;
}

/// A request's id: 16 hex digits, random.
#[derive(Debug, Clone, Copy)]
pub(super) struct RequestId(pub(super) u64);

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The id of the request being answered, if called while answering one.
pub(super) fn current_request_id() -> Option<RequestId> {
    REQUEST_ID.try_with(|id| *id).ok()
}
