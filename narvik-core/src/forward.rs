//! [`forward_session_store!`](crate::forward_session_store): the
//! [`SessionStore`](crate::SessionStore) of a wrapper that hands calls to an inner store, written
//! once for every such wrapper.

/// Implements [`SessionStore`](crate::SessionStore) for a wrapper: each call named in `forward`
/// goes to an inner store unchanged, the wrapper writes its own calls below the list (as in an
/// `#[async_trait]` impl, without the attribute), and every call named in neither keeps the
/// trait's default body.
///
/// - `inner = |this| EXPR;` names the inner store, given the wrapper as `this` (any store:
///   a field, an `Arc<dyn SessionStore>`, `**this` of a smart pointer).
/// - `before = |this, operation| EXPR;` (optional) runs before each forwarded `async` call,
///   with the call's name as a `&'static str` (`"save_session"`), to count calls, say.
///   `capabilities`, `store_name` and `subscribe_invalidations` forward without it.
/// - `forward = [...];` lists the calls to forward, by their names in the trait. A call
///   listed there and written below too is a compile error (defined twice), and so is a name
///   that is no call of the trait.
///
/// Generic wrappers put their parameters in brackets: `impl[S: SessionStore] SessionStore for
/// Wrapper<S> { ... }`.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// use narvik_core::{forward_session_store, Result, SessionRecord, SessionStore};
///
/// /// Counts the calls it forwards, and refuses saves for the user "mallory".
/// struct Guarded<S> {
///     inner: S,
///     calls: AtomicU64,
/// }
///
/// forward_session_store! {
///     impl[S: SessionStore] SessionStore for Guarded<S> {
///         inner = |this| &this.inner;
///         before = |this, _operation| this.calls.fetch_add(1, Ordering::Relaxed);
///         forward = [
///             capabilities, store_name, fetch_session, update_session_expiry, update_record_expiry,
///             delete_session, fetch_sessions_for_user, delete_sessions_for_user,
///             delete_all_expired_sessions, update_session_data, subscribe_invalidations,
///         ];
///
///         async fn save_session(&self, record: &SessionRecord) -> Result<()> {
///             if record.user_id == "mallory" {
///                 return Err(narvik_core::Error::InvalidData("not this user".to_owned()));
///             }
///             self.inner.save_session(record).await
///         }
///     }
/// }
/// ```
#[macro_export]
macro_rules! forward_session_store {
    (
        impl $([$($generics:tt)*])? SessionStore for $wrapper:ty {
            inner = |$this:ident| $inner:expr;
            $(before = |$hook_this:pat_param, $operation:pat_param| $hook:expr;)?
            forward = [$($call:ident),* $(,)?];
            $($own:tt)*
        }
    ) => {
        $crate::__forward_session_store! {
            @calls ($this, $inner, [$($hook_this, $operation | $hook)?])
            []
            [$($call)*]
            ([$($($generics)*)?] $wrapper, [$($own)*])
        }
    };
}

/// The steps of [`forward_session_store!`]: each turns the first name of the list into its
/// forwarding method, so that the last can hand one complete `impl` to `async_trait` (which
/// would not see methods a macro inside the `impl` produced).
#[doc(hidden)]
#[macro_export]
macro_rules! __forward_session_store {
    (@calls $context:tt [$($done:tt)*] [] ([$($generics:tt)*] $wrapper:ty, [$($own:tt)*])) => {
        #[$crate::async_trait]
        impl<$($generics)*> $crate::SessionStore for $wrapper {
            $($done)*
            $($own)*
        }
    };
    (
        @calls ($this:ident, $inner:expr, $hook:tt) [$($done:tt)*]
        [capabilities $($rest:ident)*] $impl:tt
    ) => {
        $crate::__forward_session_store! {
            @calls ($this, $inner, $hook)
            [$($done)*
                fn capabilities(&self) -> $crate::Capabilities {
                    let $this = self;
                    ($inner).capabilities()
                }
            ]
            [$($rest)*]
            $impl
        }
    };
    (
        @calls ($this:ident, $inner:expr, $hook:tt) [$($done:tt)*]
        [store_name $($rest:ident)*] $impl:tt
    ) => {
        $crate::__forward_session_store! {
            @calls ($this, $inner, $hook)
            [$($done)*
                fn store_name(&self) -> &'static str {
                    let $this = self;
                    ($inner).store_name()
                }
            ]
            [$($rest)*]
            $impl
        }
    };
    (
        @calls ($this:ident, $inner:expr, $hook:tt) [$($done:tt)*]
        [subscribe_invalidations $($rest:ident)*] $impl:tt
    ) => {
        $crate::__forward_session_store! {
            @calls ($this, $inner, $hook)
            [$($done)*
                fn subscribe_invalidations(
                    &self,
                ) -> ::core::option::Option<$crate::invalidation::InvalidationSubscription> {
                    let $this = self;
                    ($inner).subscribe_invalidations()
                }
            ]
            [$($rest)*]
            $impl
        }
    };
    (
        @calls ($this:ident, $inner:expr, $hook:tt) [$($done:tt)*]
        [save_session $($rest:ident)*] $impl:tt
    ) => {
        $crate::__forward_session_store! {
            @calls ($this, $inner, $hook)
            [$($done)*
                async fn save_session(&self, record: &$crate::SessionRecord) -> $crate::Result<()> {
                    $crate::__forward_session_store!(@before self, save_session, $hook);
                    let $this = self;
                    ($inner).save_session(record).await
                }
            ]
            [$($rest)*]
            $impl
        }
    };
    (
        @calls ($this:ident, $inner:expr, $hook:tt) [$($done:tt)*]
        [fetch_session $($rest:ident)*] $impl:tt
    ) => {
        $crate::__forward_session_store! {
            @calls ($this, $inner, $hook)
            [$($done)*
                async fn fetch_session(
                    &self,
                    session_id: &str,
                ) -> $crate::Result<::core::option::Option<$crate::SessionRecord>> {
                    $crate::__forward_session_store!(@before self, fetch_session, $hook);
                    let $this = self;
                    ($inner).fetch_session(session_id).await
                }
            ]
            [$($rest)*]
            $impl
        }
    };
    (
        @calls ($this:ident, $inner:expr, $hook:tt) [$($done:tt)*]
        [update_session_expiry $($rest:ident)*] $impl:tt
    ) => {
        $crate::__forward_session_store! {
            @calls ($this, $inner, $hook)
            [$($done)*
                async fn update_session_expiry(
                    &self,
                    session_id: &str,
                    expires_at: $crate::__private::OffsetDateTime,
                ) -> $crate::Result<()> {
                    $crate::__forward_session_store!(@before self, update_session_expiry, $hook);
                    let $this = self;
                    ($inner).update_session_expiry(session_id, expires_at).await
                }
            ]
            [$($rest)*]
            $impl
        }
    };
    (
        @calls ($this:ident, $inner:expr, $hook:tt) [$($done:tt)*]
        [update_record_expiry $($rest:ident)*] $impl:tt
    ) => {
        $crate::__forward_session_store! {
            @calls ($this, $inner, $hook)
            [$($done)*
                async fn update_record_expiry(
                    &self,
                    record: &$crate::SessionRecord,
                    expires_at: $crate::__private::OffsetDateTime,
                ) -> $crate::Result<()> {
                    $crate::__forward_session_store!(@before self, update_record_expiry, $hook);
                    let $this = self;
                    ($inner).update_record_expiry(record, expires_at).await
                }
            ]
            [$($rest)*]
            $impl
        }
    };
    (
        @calls ($this:ident, $inner:expr, $hook:tt) [$($done:tt)*]
        [delete_session $($rest:ident)*] $impl:tt
    ) => {
        $crate::__forward_session_store! {
            @calls ($this, $inner, $hook)
            [$($done)*
                async fn delete_session(&self, session_id: &str) -> $crate::Result<()> {
                    $crate::__forward_session_store!(@before self, delete_session, $hook);
                    let $this = self;
                    ($inner).delete_session(session_id).await
                }
            ]
            [$($rest)*]
            $impl
        }
    };
    (
        @calls ($this:ident, $inner:expr, $hook:tt) [$($done:tt)*]
        [fetch_sessions_for_user $($rest:ident)*] $impl:tt
    ) => {
        $crate::__forward_session_store! {
            @calls ($this, $inner, $hook)
            [$($done)*
                async fn fetch_sessions_for_user(
                    &self,
                    user_id: &str,
                    now: $crate::__private::OffsetDateTime,
                ) -> $crate::Result<::std::vec::Vec<$crate::SessionRecord>> {
                    $crate::__forward_session_store!(@before self, fetch_sessions_for_user, $hook);
                    let $this = self;
                    ($inner).fetch_sessions_for_user(user_id, now).await
                }
            ]
            [$($rest)*]
            $impl
        }
    };
    (
        @calls ($this:ident, $inner:expr, $hook:tt) [$($done:tt)*]
        [delete_sessions_for_user $($rest:ident)*] $impl:tt
    ) => {
        $crate::__forward_session_store! {
            @calls ($this, $inner, $hook)
            [$($done)*
                async fn delete_sessions_for_user(&self, user_id: &str) -> $crate::Result<()> {
                    $crate::__forward_session_store!(@before self, delete_sessions_for_user, $hook);
                    let $this = self;
                    ($inner).delete_sessions_for_user(user_id).await
                }
            ]
            [$($rest)*]
            $impl
        }
    };
    (
        @calls ($this:ident, $inner:expr, $hook:tt) [$($done:tt)*]
        [delete_all_expired_sessions $($rest:ident)*] $impl:tt
    ) => {
        $crate::__forward_session_store! {
            @calls ($this, $inner, $hook)
            [$($done)*
                async fn delete_all_expired_sessions(
                    &self,
                    now: $crate::__private::OffsetDateTime,
                ) -> $crate::Result<u64> {
                    $crate::__forward_session_store!(
                        @before self, delete_all_expired_sessions, $hook
                    );
                    let $this = self;
                    ($inner).delete_all_expired_sessions(now).await
                }
            ]
            [$($rest)*]
            $impl
        }
    };
    (
        @calls ($this:ident, $inner:expr, $hook:tt) [$($done:tt)*]
        [update_session_data $($rest:ident)*] $impl:tt
    ) => {
        $crate::__forward_session_store! {
            @calls ($this, $inner, $hook)
            [$($done)*
                async fn update_session_data(
                    &self,
                    record: &$crate::SessionRecord,
                    data: &$crate::SessionData,
                    now: $crate::__private::OffsetDateTime,
                ) -> $crate::Result<bool> {
                    $crate::__forward_session_store!(@before self, update_session_data, $hook);
                    let $this = self;
                    ($inner).update_session_data(record, data, now).await
                }
            ]
            [$($rest)*]
            $impl
        }
    };
    (@before $self:ident, $call:ident, []) => {};
    (
        @before $self:ident, $call:ident,
        [$hook_this:pat_param, $operation:pat_param | $hook:expr]
    ) => {{
        let $hook_this = $self;
        let $operation: &'static str = ::core::stringify!($call);
        $hook;
    }};
}
