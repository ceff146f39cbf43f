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
use std::ffi::OsStr;
use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use ort::environment::Environment;
use ort::logging::LogLevel;

use super::{InferenceError, Provider};

/// Environment variable naming the library, the same one `ort` itself honours.
const LIBRARY_VARIABLE: &str = "ORT_DYLIB_PATH";
const LIBRARY_PREFIX: &str = "libonnxruntime.so.";
/// Where a virtualenv keeps the ONNX Runtime library.
const VENV_CAPI: &str = "lib/python3*/site-packages/onnxruntime/capi";

/// The virtualenv, under the project root, that holds the ONNX Runtime build with `provider`:
/// `make deps` installs `onnxruntime` into `.venv` and `onnxruntime-openvino` into
/// `.venv-openvino` (the two packages are both the Python module `onnxruntime`, so they cannot
/// share one); `onnxruntime-gpu` is the user's to install, into `.venv-gpu`.
fn venv(provider: Provider) -> &'static str {
    match provider {
        Provider::Cpu => ".venv",
        Provider::OpenVino => ".venv-openvino",
        Provider::Cuda | Provider::TensorRt => ".venv-gpu",
    }
}

/// Where the ONNX Runtime library for `provider` is looked for, in order: `explicit` (the
/// element's `ort-library` property), the `ORT_DYLIB_PATH` environment variable, the library
/// this process already loaded (a process has one), then the project's own install: the newest
/// `libonnxruntime.so.*` under `<CARGO_MANIFEST_DIR at build time>/<venv>/lib/python3*/
/// site-packages/onnxruntime/capi/`, the virtualenv that [`venv`] names for the provider.
///
/// An explicit path or the variable is returned as given, even when nothing is there: a path
/// someone chose that does not work is reported by [`environment`], never silently replaced by
/// another library. Empty values count as unset. Whether the library has the provider is
/// [`require_provider`]'s to say once it is loaded.
pub fn find_library(
    explicit: Option<&Path>,
    provider: Provider,
) -> Result<PathBuf, InferenceError> {
    let loaded = RUNTIME
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .library
        .clone();
    find_library_in(
        explicit,
        std::env::var_os(LIBRARY_VARIABLE).as_deref(),
        loaded,
        Path::new(env!("CARGO_MANIFEST_DIR")),
        provider,
    )
}

fn find_library_in(
    explicit: Option<&Path>,
    variable: Option<&OsStr>,
    loaded: Option<PathBuf>,
    project: &Path,
    provider: Provider,
) -> Result<PathBuf, InferenceError> {
    if let Some(path) = explicit.filter(|p| !p.as_os_str().is_empty()) {
        return Ok(path.to_owned());
    }
    if let Some(path) = variable.filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    if let Some(path) = loaded {
        return Ok(path);
    }
    let venv = project.join(venv(provider));
    newest_in_venv(&venv).ok_or_else(|| {
        let install = match provider {
            Provider::Cpu | Provider::OpenVino => "run `make deps` to install it there".into(),
            Provider::Cuda | Provider::TensorRt => format!(
                "install it there (python3 -m venv {0} && {0}/bin/pip install {1})",
                venv.display(),
                provider.package()
            ),
        };
        InferenceError::new(
            &venv.join(VENV_CAPI).join(format!("{LIBRARY_PREFIX}*")),
            format!(
                "no ONNX Runtime library found for execution-provider={provider} (PyPI package \
                 {}): set the ort-library property or {LIBRARY_VARIABLE}, or {install}",
                provider.package()
            ),
        )
    })
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

/// The `libonnxruntime.so.<version>` with the highest version in virtualenv `venv`, compared
/// number by number.
fn newest_in_venv(venv: &Path) -> Option<PathBuf> {
    let pythons = fs::read_dir(venv.join("lib")).ok()?;
    pythons
        .flatten()
        .filter(|python| python.file_name().to_string_lossy().starts_with("python3"))
        .filter_map(|python| {
            fs::read_dir(python.path().join("site-packages/onnxruntime/capi")).ok()
        })
        .flat_map(|capi| capi.flatten())
        .filter_map(|entry| {
            let name = entry.file_name();
            let version = name.to_str()?.strip_prefix(LIBRARY_PREFIX)?;
            let numbers = version
                .split('.')
                .map(str::parse::<u64>)
                .collect::<Result<Vec<_>, _>>()
                .ok()?;
            Some((numbers, entry.path()))
        })
        .max()
        .map(|(_, path)| path)
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

    fn touch(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"").unwrap();
    }

    #[test]
    fn explicit_path_then_variable_then_loaded_then_newest_in_the_providers_venv() {
        let project = super::super::tests::Scratch::new("find-library");
        let capi = project.join(".venv/lib/python3.11/site-packages/onnxruntime/capi");
        for name in [
            "libonnxruntime.so.1.9.0",
            "libonnxruntime.so.1.23.2",
            "libonnxruntime.so.1.23.10",
            "libonnxruntime.so.2.0.0-dev",
            "libonnxruntime_providers_shared.so",
        ] {
            touch(&capi.join(name));
        }
        touch(
            &project
                .join(".venv/lib/python2.7/site-packages/onnxruntime/capi/libonnxruntime.so.9.0.0"),
        );
        let openvino = project
            .join(".venv-openvino/lib/python3.11/site-packages/onnxruntime/capi")
            .join("libonnxruntime.so.1.24.1");
        touch(&openvino);

        let find =
            |explicit: Option<&str>, variable: Option<&str>, loaded: Option<&str>, provider| {
                find_library_in(
                    explicit.map(Path::new),
                    variable.map(OsStr::new),
                    loaded.map(PathBuf::from),
                    &project,
                    provider,
                )
            };
        let (explicit, variable) = ("/opt/ort/libonnxruntime.so", "/env/libonnxruntime.so");
        let loaded = "/loaded/libonnxruntime.so.1.24.1";
        assert_eq!(
            find(Some(explicit), Some(variable), Some(loaded), Provider::Cpu).unwrap(),
            Path::new(explicit)
        );
        assert_eq!(
            find(Some(""), Some(variable), Some(loaded), Provider::Cpu).unwrap(),
            Path::new(variable)
        );
        assert_eq!(
            find(None, Some(""), Some(loaded), Provider::OpenVino).unwrap(),
            Path::new(loaded)
        );
        assert_eq!(
            find(None, Some(""), None, Provider::Cpu).unwrap(),
            capi.join("libonnxruntime.so.1.23.10")
        );
        assert_eq!(
            find(None, None, None, Provider::OpenVino).unwrap(),
            openvino
        );

        let err = find(None, None, None, Provider::Cuda).unwrap_err();
        assert!(
            err.file.ends_with(
                ".venv-gpu/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.*"
            ),
            "{err}"
        );
        assert!(err.message.contains("onnxruntime-gpu"), "{err}");

        let empty = super::super::tests::Scratch::new("find-library-none");
        for (provider, venv, package) in [
            (Provider::Cpu, ".venv/", "package onnxruntime)"),
            (
                Provider::OpenVino,
                ".venv-openvino/",
                "package onnxruntime-openvino)",
            ),
        ] {
            let err = find_library_in(None, None, None, &empty, provider).unwrap_err();
            assert!(err.file.ends_with("capi/libonnxruntime.so.*"), "{err}");
            assert!(err.file.contains(venv), "{err}");
            assert!(err.message.contains(package), "{err}");
            assert!(
                err.message
                    .contains(&format!("execution-provider={provider} ")),
                "{err}"
            );
            assert!(err.message.contains("make deps"), "{err}");
        }
    }
}
