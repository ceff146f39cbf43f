//! Finding and loading the ONNX Runtime shared library, and the one environment per process.
//!
//! ONNX Runtime is opened with `dlopen` at run time (`ort`'s `load-dynamic`), so the plugin links
//! and registers without it and the library can be chosen per pipeline. `ort` keeps the first
//! library it opens for the life of the process and allows one environment, so both live here,
//! behind one lock, and only a *successful* load is remembered: a bad path leaves the process
//! free to load a good one afterwards. ONNX Runtime's own log goes to the sink set with
//! [`send_log_to`]; the last error it logged on a thread is kept for that thread's next error
//! message.

use std::cell::RefCell;
use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use ort::environment::Environment;
use ort::logging::LogLevel;

use super::search::{self, Places};
use super::{InferenceError, Provider};

/// The file GStreamer loaded the plugin from, if it did (not when registered statically).
static PLUGIN_FILE: OnceLock<PathBuf> = OnceLock::new();

/// Records the file the plugin was loaded from: the ONNX Runtime installed beside it is looked
/// for there.
pub fn set_plugin_file(path: PathBuf) {
    let _ = PLUGIN_FILE.set(path);
}

/// The ONNX Runtime library for `provider`: `explicit` (the element's `ort-library`), then the
/// places [`search`](super::search) lists, in its order. Whether the library has the provider
/// is [`require_provider`]'s to say once it is loaded.
pub fn find_library(
    explicit: Option<&Path>,
    provider: Provider,
) -> Result<PathBuf, InferenceError> {
    let loaded = RUNTIME
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .library
        .clone();
    let places = Places::of_process(explicit, loaded, PLUGIN_FILE.get().cloned());
    search::find(&places, provider)
}

/// Fails unless the library this process loaded has `provider`, naming the library, what it has
/// and what to install.
pub fn require_provider(library: &Path, provider: Provider) -> Result<(), InferenceError> {
    let error = |message: String| InferenceError::new(library, message);
    if provider.is_available().map_err(error)? {
        return Ok(());
    }
    let available: Vec<&str> = Provider::ALL
        .into_iter()
        .filter(|p| p.is_available().unwrap_or(false))
        .map(Provider::name)
        .collect();
    Err(error(format!(
        "execution-provider={provider}: this ONNX Runtime library has no {} (it has {}); \
         install the PyPI package {} and set ort-library to its \
         onnxruntime/capi/libonnxruntime.so.*. ONNX Runtime is loaded once per process, so every \
         element in it runs on the same library",
        provider.runtime_name(),
        available.join(", "),
        provider.package()
    )))
}

/// What this process has loaded. `library` is set as soon as `ort` holds the library (it can't
/// be swapped after that, even if creating the environment then fails).
struct Runtime {
    library: Option<PathBuf>,
    environment: Option<&'static Environment>,
}

static RUNTIME: Mutex<Runtime> = Mutex::new(Runtime {
    library: None,
    environment: None,
});

/// The process-wide ONNX Runtime environment, loading the library on first use.
///
/// Later calls must name the same library (compared after resolving links); another path is an
/// error naming the library already loaded, since ONNX Runtime can be loaded only once per
/// process. A missing file, a file that is not a loadable library, a library without the ONNX
/// Runtime API or one too old for the API version this build needs are errors naming the path
/// (and the versions). Failed attempts leave nothing behind. Never panics.
pub fn environment(library: &Path) -> Result<&'static Environment, InferenceError> {
    let error = |message: String| InferenceError::new(library, message);
    // The canonical path identifies the file; `dlopen` gets the path as given (made absolute, as
    // `ort` resolves relative paths against the executable's directory, not ours), so the
    // library finds its companions (`libonnxruntime_providers_*.so`) beside the link it was
    // reached through.
    let canonical = fs::canonicalize(library)
        .map_err(|e| error(format!("cannot open the ONNX Runtime library: {e}")))?;
    let absolute = std::path::absolute(library).unwrap_or_else(|_| canonical.clone());

    let mut runtime = RUNTIME.lock().unwrap_or_else(PoisonError::into_inner);
    match &runtime.library {
        Some(loaded) if *loaded != canonical => {
            return Err(error(format!(
                "ONNX Runtime is already loaded in this process from {}, and a process can load \
                 it only once",
                loaded.display()
            )));
        }
        Some(_) => {}
        None => {
            load_library(&absolute).map_err(error)?;
            runtime.library = Some(canonical);
        }
    }
    if let Some(environment) = runtime.environment {
        return Ok(environment);
    }
    let built = catch_panic(|| {
        ort::init()
            .with_name("gst-talkinghead")
            .with_telemetry(false)
            .with_logger(Arc::new(log))
            .build()
            .map_err(|e| e.to_string())
    })
    .map_err(|e| error(format!("cannot create the ONNX Runtime environment: {e}")))?;
    // With a logger of its own `ort` asks for every message, down to verbose ones, which ONNX
    // Runtime would format on every run.
    built.set_log_level(LogLevel::Warning);
    let environment: &'static Environment = Box::leak(Box::new(built));
    runtime.environment = Some(environment);
    Ok(environment)
}

/// Receives ONNX Runtime's own log: the level, where in ONNX Runtime, the message.
pub type LogSink = fn(LogLevel, &str, &str);

static LOG_SINK: OnceLock<LogSink> = OnceLock::new();

thread_local! {
    /// The last error ONNX Runtime logged on this thread: often the only place that says why a
    /// provider failed ("Device GPU is not available"), while the error returned is generic.
    static LOGGED_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Sends ONNX Runtime's log to `sink` from now on (the first sink set stays; without one the
/// log is dropped).
pub fn send_log_to(sink: LogSink) {
    let _ = LOG_SINK.set(sink);
}

fn log(level: LogLevel, _category: &str, _id: &str, location: &str, message: &str) {
    if matches!(level, LogLevel::Error | LogLevel::Fatal) {
        LOGGED_ERROR.with(|logged| *logged.borrow_mut() = Some(message.to_owned()));
    }
    if let Some(sink) = LOG_SINK.get() {
        sink(level, location, message);
    }
}

/// Takes the last error ONNX Runtime logged on this thread since the last call.
pub(super) fn take_logged_error() -> Option<String> {
    LOGGED_ERROR.with(|logged| logged.borrow_mut().take())
}

fn load_library(path: &Path) -> Result<(), String> {
    catch_panic(|| ort::init_from(path).map(drop).map_err(describe_load_error))
}

fn describe_load_error(error: ort::LoadDynamicError) -> String {
    use ort::LoadDynamicError as E;

    match error {
        // libloading's Display is a bare "dlopen failed"; the loader's reason is the source, and
        // it starts with the path, which the caller already reports.
        E::Dlopen { error, path } => {
            let reason = std::error::Error::source(&error)
                .map_or_else(|| error.to_string(), ToString::to_string);
            let prefix = format!("{}: ", path.display());
            let reason = reason.strip_prefix(&prefix).unwrap_or(&reason);
            format!("cannot load the ONNX Runtime library: {reason}")
        }
        E::MissingApi { .. } => {
            "not an ONNX Runtime library: it does not export OrtGetApiBase".into()
        }
        E::InvalidVersionString => {
            "not a usable ONNX Runtime library: it reports a malformed version".into()
        }
        E::BadVersion { version_str, .. } => format!(
            "ONNX Runtime {version_str} is too old: this build needs 1.{}.0 or newer",
            ort::MINOR_VERSION
        ),
    }
}

/// Runs `f`, turning a panic inside `ort` into an error: loading must not take the app down.
fn catch_panic<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        Err(format!(
            "ONNX Runtime bindings panicked: {}",
            crate::fault::panic_message(&*payload)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_library_too_old_is_reported_with_both_versions() {
        let message = describe_load_error(ort::LoadDynamicError::BadVersion {
            version_str: "1.16.3".into(),
            path: "/usr/lib/libonnxruntime.so.1.16.3".into(),
        });
        assert_eq!(
            message,
            "ONNX Runtime 1.16.3 is too old: this build needs 1.23.0 or newer"
        );
    }
}
