//! What a task is: a plain function declared with [`task!`](crate::task),
//! which becomes a unit type implementing [`Task`]: a stable tag, its
//! parameter and output types, and a [`Runner`] that decodes arguments,
//! calls the function and encodes its result. How the arguments reach it
//! (by value or by reference) is [`IntoArgs`]; where it runs is the
//! scheduler's business.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::wire::{Arg, ObjectId};

/// A value's encoded bytes, shared without copying (a 64 MiB argument is
/// not duplicated per reader).
pub type Blob = Arc<Vec<u8>>;

/// What a task's own code reported instead of a result.
#[derive(Debug, Clone, PartialEq, Eq)]
#[doc(hidden)]
pub enum Failure {
    /// The function returned `Err(e)`; `e.to_string()`.
    Error(String),
    /// The function panicked; the panic message.
    Panicked(String),
    /// An argument did not decode as the parameter type.
    Decode(String),
    /// The result did not encode.
    Encode(String),
}

/// The future an async task returns, already encoded.
#[doc(hidden)]
pub type AsyncRun = Pin<Box<dyn Future<Output = Result<Vec<u8>, Failure>>>>;

/// How a task's function is called: on the worker thread pool (sync) or
/// on the node's runtime (async).
#[derive(Clone, Copy)]
#[doc(hidden)]
pub enum Runner {
    /// A blocking function, run on the node's task threads.
    Sync(fn(Vec<Blob>) -> Result<Vec<u8>, Failure>),
    /// An async function, run on the scheduler's arbiter.
    Async(fn(Vec<Blob>) -> AsyncRun),
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Runner::Sync(_) => "Runner::Sync",
            Runner::Async(_) => "Runner::Async",
        })
    }
}

/// A function other nodes can run, declared with [`task!`](crate::task).
///
/// The tag names the function on the wire: it MUST be the same on every
/// node and unique in the cluster. By default it is the module path and
/// the function's name; `task!("my.tag", fn ...)` sets it.
pub trait Task: Copy + Send + Sync + 'static {
    /// The parameter types as a tuple: `(u64,)`, `(String, u32)`, `()`.
    type Params;
    /// What the function returns (the `T` of a `Result<T, E>`).
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// The stable tag.
    const TAG: &'static str;
    /// How to call it.
    #[doc(hidden)]
    fn runner() -> Runner;
}

/// One argument as the caller gives it: the value itself, or a
/// [`TaskRef`](super::TaskRef) to a value some task produced and kept.
pub trait IntoArg<T> {
    /// The argument as it travels.
    #[doc(hidden)]
    fn into_arg(self) -> Result<Arg, String>;
}

impl<T: Serialize> IntoArg<T> for T {
    fn into_arg(self) -> Result<Arg, String> {
        encode(&self).map(|bytes| Arg::Value(serde_bytes::ByteBuf::from(bytes)))
    }
}

/// All arguments of a call: nothing for `()`, the argument itself for one
/// parameter, a tuple for several.
pub trait IntoArgs<P> {
    /// The arguments as they travel.
    #[doc(hidden)]
    fn into_args(self) -> Result<Vec<Arg>, String>;
}

impl IntoArgs<()> for () {
    fn into_args(self) -> Result<Vec<Arg>, String> {
        Ok(Vec::new())
    }
}

impl<T1, A1: IntoArg<T1>> IntoArgs<(T1,)> for A1 {
    fn into_args(self) -> Result<Vec<Arg>, String> {
        Ok(vec![self.into_arg()?])
    }
}

macro_rules! tuple_args {
    ($(($($t:ident $a:ident $v:ident),+))+) => {$(
        impl<$($t, $a: IntoArg<$t>),+> IntoArgs<($($t,)+)> for ($($a,)+) {
            fn into_args(self) -> Result<Vec<Arg>, String> {
                let ($($v,)+) = self;
                Ok(vec![$($v.into_arg()?),+])
            }
        }
    )+};
}

tuple_args! {
    (T1 A1 a1, T2 A2 a2)
    (T1 A1 a1, T2 A2 a2, T3 A3 a3)
    (T1 A1 a1, T2 A2 a2, T3 A3 a3, T4 A4 a4)
    (T1 A1 a1, T2 A2 a2, T3 A3 a3, T4 A4 a4, T5 A5 a5)
    (T1 A1 a1, T2 A2 a2, T3 A3 a3, T4 A4 a4, T5 A5 a5, T6 A6 a6)
}

/// The objects (kept results) among `args`.
pub(crate) fn refs(args: &[Arg]) -> impl Iterator<Item = ObjectId> + '_ {
    args.iter().filter_map(|a| match a {
        Arg::Ref(object) => Some(*object),
        Arg::Value(_) => None,
    })
}

/// Encodes a value as arguments and results travel.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
    rmp_serde::to_vec(value).map_err(|e| e.to_string())
}

/// Decodes a value encoded by [`encode`].
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    rmp_serde::from_slice(bytes).map_err(|e| e.to_string())
}

/// Decodes the next argument (used by [`task!`](crate::task)).
#[doc(hidden)]
pub fn __arg<T: FromArg>(args: &mut std::vec::IntoIter<Blob>) -> Result<T, Failure> {
    let blob = args
        .next()
        .ok_or_else(|| Failure::Decode("too few arguments".to_owned()))?;
    T::from_arg(blob).map_err(Failure::Decode)
}

/// How a task's parameter is made from its encoded argument: decoded, or
/// for [`Bytes`] shared without a copy.
pub trait FromArg: Sized {
    /// The parameter from its argument's bytes.
    #[doc(hidden)]
    fn from_arg(blob: Blob) -> Result<Self, String>;
}

impl<T: DeserializeOwned> FromArg for T {
    fn from_arg(blob: Blob) -> Result<Self, String> {
        decode(&blob)
    }
}

/// Bytes a task takes without copying them: a view into the argument as
/// it arrived (a 64 MiB kept result is not copied again to be read).
/// Pass a [`TaskRef`](super::TaskRef) to a [`ByteBuf`](serde_bytes::ByteBuf) or `Vec<u8>`
/// result, a `ByteBuf`, a `Vec<u8>` or `Bytes`; read it as a `&[u8]`.
/// (Only a `ByteBuf` result is shared as it is: MessagePack encodes a
/// `Vec<u8>` as an array of integers, which is decoded into a copy. Return
/// `ByteBuf` from tasks that make bytes.)
#[derive(Clone)]
pub struct Bytes {
    blob: Blob,
    start: usize,
    end: usize,
}

impl Bytes {
    /// `bytes`, owned.
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        let end = bytes.len();
        Self {
            blob: Arc::new(bytes),
            start: 0,
            end,
        }
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bytes({} bytes)", self.len())
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.blob.get(self.start..self.end).unwrap_or_default()
    }
}

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self)
    }
}

impl FromArg for Bytes {
    fn from_arg(blob: Blob) -> Result<Self, String> {
        // A MessagePack bin: marker, big-endian length, the bytes.
        let (header, len) = match blob.first() {
            Some(0xc4) => (2, blob.get(1).map(|b| usize::from(*b))),
            Some(0xc5) => (
                3,
                blob.get(1..3)
                    .and_then(|b| <[u8; 2]>::try_from(b).ok())
                    .map(|b| usize::from(u16::from_be_bytes(b))),
            ),
            Some(0xc6) => (
                5,
                blob.get(1..5)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .and_then(|b| usize::try_from(u32::from_be_bytes(b)).ok()),
            ),
            // A `Vec<u8>` travels as an array of integers: decoded (copied).
            Some(0x90..=0x9f | 0xdc | 0xdd) => {
                return decode::<Vec<u8>>(&blob).map(Bytes::from_vec)
            }
            _ => return Err("the argument is not a byte string".to_owned()),
        };
        let len = len.ok_or_else(|| "a truncated byte string".to_owned())?;
        if header + len != blob.len() {
            return Err("a byte string with trailing or missing bytes".to_owned());
        }
        Ok(Bytes {
            blob,
            start: header,
            end: header + len,
        })
    }
}

impl IntoArg<Bytes> for Vec<u8> {
    fn into_arg(self) -> Result<Arg, String> {
        encode(serde_bytes::Bytes::new(&self)).map(|b| Arg::Value(serde_bytes::ByteBuf::from(b)))
    }
}

impl IntoArg<Bytes> for serde_bytes::ByteBuf {
    fn into_arg(self) -> Result<Arg, String> {
        encode(&self).map(|b| Arg::Value(serde_bytes::ByteBuf::from(b)))
    }
}

/// Checks that every argument was used (used by [`task!`](crate::task)).
#[doc(hidden)]
pub fn __no_more(args: std::vec::IntoIter<Blob>) -> Result<(), Failure> {
    if args.len() == 0 {
        Ok(())
    } else {
        Err(Failure::Decode(format!(
            "{} arguments too many",
            args.len()
        )))
    }
}

/// Encodes a result (used by [`task!`](crate::task)).
#[doc(hidden)]
pub fn __output<T: Serialize, E: std::fmt::Display>(
    result: Result<T, E>,
) -> Result<Vec<u8>, Failure> {
    match result {
        Ok(value) => encode(&value).map_err(Failure::Encode),
        Err(e) => Err(Failure::Error(e.to_string())),
    }
}

/// Declares a task: a function any node that registered it can run.
///
/// ```
/// swarm_actors::task!(fn square(x: u64) -> u64 { x * x });
/// swarm_actors::task!("demo.parse", fn parse(text: String) -> Result<u64, std::num::ParseIntError> {
///     text.trim().parse()
/// });
/// swarm_actors::task!(async fn later(ms: u64) -> u64 {
///     tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
///     ms
/// });
/// ```
///
/// Each becomes a unit value (`square`) to submit and register. A
/// function that returns `Result<T, E>` (spelled so) fails with
/// `e.to_string()` on `Err`; anything else it returns is its result. A
/// panic fails the task too. Sync functions run on the node's task
/// threads, async ones on its runtime; both read their
/// [`TaskContext`](crate::tasks::TaskContext) with
/// [`tasks::context`](crate::tasks::context).
#[macro_export]
macro_rules! task {
    ($tag:literal, $($rest:tt)+) => { $crate::__task!(($tag) $($rest)+); };
    ($($rest:tt)+) => { $crate::__task!(() $($rest)+); };
}

/// The arms of [`task!`](crate::task).
#[doc(hidden)]
#[macro_export]
macro_rules! __task {
    (($($tag:literal)?) $(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?)
        -> Result<$ok:ty, $err:ty> $body:block) => {
        $crate::__task!(@emit ($($tag)?) [$(#[$attr])*] $vis $name ($($arg: $ty),*) $ok, Sync, {
            fn call($($arg: $ty),*) -> ::std::result::Result<$ok, $err> $body
            call($($arg),*)
        });
    };
    (($($tag:literal)?) $(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?)
        -> $out:ty $body:block) => {
        $crate::__task!(@emit ($($tag)?) [$(#[$attr])*] $vis $name ($($arg: $ty),*) $out, Sync, {
            fn call($($arg: $ty),*) -> $out $body
            ::std::result::Result::<$out, ::std::convert::Infallible>::Ok(call($($arg),*))
        });
    };
    (($($tag:literal)?) $(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $crate::__task!(($($tag)?) $(#[$attr])* $vis fn $name($($arg: $ty),*) -> () $body);
    };
    (($($tag:literal)?) $(#[$attr:meta])* $vis:vis async fn $name:ident($($arg:ident : $ty:ty),* $(,)?)
        -> Result<$ok:ty, $err:ty> $body:block) => {
        $crate::__task!(@emit ($($tag)?) [$(#[$attr])*] $vis $name ($($arg: $ty),*) $ok, Async, {
            async fn call($($arg: $ty),*) -> ::std::result::Result<$ok, $err> $body
            call($($arg),*).await
        });
    };
    (($($tag:literal)?) $(#[$attr:meta])* $vis:vis async fn $name:ident($($arg:ident : $ty:ty),* $(,)?)
        -> $out:ty $body:block) => {
        $crate::__task!(@emit ($($tag)?) [$(#[$attr])*] $vis $name ($($arg: $ty),*) $out, Async, {
            async fn call($($arg: $ty),*) -> $out $body
            ::std::result::Result::<$out, ::std::convert::Infallible>::Ok(call($($arg),*).await)
        });
    };
    (($($tag:literal)?) $(#[$attr:meta])* $vis:vis async fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $body:block) => {
        $crate::__task!(($($tag)?) $(#[$attr])* $vis async fn $name($($arg: $ty),*) -> () $body);
    };
    (@tag () $name:ident) => { ::std::concat!(::std::module_path!(), "::", ::std::stringify!($name)) };
    (@tag ($tag:literal) $name:ident) => { $tag };
    (@emit ($($tag:literal)?) [$($attrs:tt)*] $vis:vis $name:ident ($($arg:ident : $ty:ty),*) $out:ty, Sync, $call:block) => {
        $crate::__task!(@type [$($attrs)*] $vis $name);
        impl $crate::tasks::Task for $name {
            type Params = ($($ty,)*);
            type Output = $out;
            const TAG: &'static str = $crate::__task!(@tag ($($tag)?) $name);
            fn runner() -> $crate::tasks::Runner {
                $crate::tasks::Runner::Sync(|args| {
                    let mut _args = args.into_iter();
                    $(let $arg: $ty = $crate::tasks::__arg(&mut _args)?;)*
                    $crate::tasks::__no_more(_args)?;
                    $crate::tasks::__output($call)
                })
            }
        }
    };
    (@emit ($($tag:literal)?) [$($attrs:tt)*] $vis:vis $name:ident ($($arg:ident : $ty:ty),*) $out:ty, Async, $call:block) => {
        $crate::__task!(@type [$($attrs)*] $vis $name);
        impl $crate::tasks::Task for $name {
            type Params = ($($ty,)*);
            type Output = $out;
            const TAG: &'static str = $crate::__task!(@tag ($($tag)?) $name);
            fn runner() -> $crate::tasks::Runner {
                $crate::tasks::Runner::Async(|args| {
                    ::std::boxed::Box::pin(async move {
                        let mut _args = args.into_iter();
                        $(let $arg: $ty = $crate::tasks::__arg(&mut _args)?;)*
                        $crate::tasks::__no_more(_args)?;
                        $crate::tasks::__output(async move $call.await)
                    })
                })
            }
        }
    };
    (@type [] $vis:vis $name:ident) => {
        #[doc = ::std::concat!("The task `", ::std::stringify!($name), "`.")]
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy)]
        $vis struct $name;
    };
    (@type [$($attrs:tt)+] $vis:vis $name:ident) => {
        $($attrs)+
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy)]
        $vis struct $name;
    };
}
