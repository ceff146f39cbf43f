//! Where the ONNX Runtime library for an execution provider is looked for.
//!
//! In order, the first that gives a library wins:
//!
//! 1. the element's `ort-library` property;
//! 2. the `ORT_DYLIB_PATH` environment variable (the one `ort` itself honours);
//! 3. the library this process already loaded (a process loads one);
//! 4. beside the plugin, where `make install` puts it: `<plugin folder>/../gst-talkinghead/
//!    <build>/`, `<build>` being `onnxruntime`, `onnxruntime-openvino` or `onnxruntime-gpu`;
//! 5. the checkout the plugin was built in, while it runs from there (from its `target/`, or
//!    registered statically by its tests): the virtualenv `make deps` fills for the provider
//!    (`.venv`, `.venv-openvino`; `.venv-gpu` for the user's `onnxruntime-gpu`);
//! 6. a Python `onnxruntime` package: in `$VIRTUAL_ENV`, the user's site-packages
//!    (`~/.local/lib/python3*/site-packages`), then the system's (`/usr/local/lib/python3*/
//!    dist-packages`, `/usr/lib/python3/dist-packages`), each in `onnxruntime/capi/`;
//! 7. the system library path: the folders of `$LD_LIBRARY_PATH`, `/usr/local/lib`,
//!    `/usr/lib/x86_64-linux-gnu`, `/usr/lib`.
//!
//! 1 to 3 are taken as they are: a path someone chose that does not work is reported when it
//! loads, never replaced by another. From 4 on, a folder counts only if it has a
//! `libonnxruntime.so.<version>` (the newest is taken; `libonnxruntime.so` in the system
//! folders) and, for a provider other than `cpu`, the provider's own library beside it
//! (`libonnxruntime_providers_openvino.so`, …), so that the build found has the provider.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use super::{InferenceError, Provider};

const LIBRARY_PREFIX: &str = "libonnxruntime.so.";
const UNVERSIONED: &str = "libonnxruntime.so";
/// A folder component standing for every `python3*` folder there.
const ANY_PYTHON: &str = "python3*";

/// What the search looks at, gathered from the process (see [`Places::of_process`]).
#[derive(Debug, Default)]
pub struct Places {
    pub explicit: Option<PathBuf>,
    pub variable: Option<PathBuf>,
    pub loaded: Option<PathBuf>,
    /// The plugin's own file, when GStreamer loaded it from one.
    pub plugin: Option<PathBuf>,
    /// The checkout the plugin was built in.
    pub project: PathBuf,
    pub virtual_env: Option<PathBuf>,
    pub home: Option<PathBuf>,
    /// `$LD_LIBRARY_PATH`'s folders.
    pub library_path: Vec<PathBuf>,
}

impl Places {
    pub fn of_process(
        explicit: Option<&Path>,
        loaded: Option<PathBuf>,
        plugin: Option<PathBuf>,
    ) -> Places {
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        Places {
            explicit: explicit.map(Path::to_owned),
            variable: var("ORT_DYLIB_PATH").map(PathBuf::from),
            loaded,
            plugin,
            project: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            virtual_env: var("VIRTUAL_ENV").map(PathBuf::from),
            home: var("HOME").map(PathBuf::from),
            library_path: var("LD_LIBRARY_PATH")
                .map(|paths| std::env::split_paths(&paths).collect())
                .unwrap_or_default(),
        }
    }

    /// Whether the plugin runs from the checkout it was built in.
    fn in_checkout(&self) -> bool {
        self.plugin
            .as_ref()
            .is_none_or(|plugin| plugin.starts_with(self.project.join("target")))
    }

    /// The folders looked in from step 4 on, in order; `python3*` stands for each such folder.
    fn folders(&self, provider: Provider) -> Vec<PathBuf> {
        let capi = |site: PathBuf| site.join("onnxruntime/capi");
        let site_packages =
            |root: &Path| capi(root.join("lib").join(ANY_PYTHON).join("site-packages"));
        let mut folders = Vec::new();
        let above_plugins = self
            .plugin
            .as_deref()
            .and_then(Path::parent)
            .and_then(Path::parent);
        if let Some(root) = above_plugins {
            folders.push(root.join("gst-talkinghead").join(installed_build(provider)));
        }
        if self.in_checkout() {
            folders.push(site_packages(&self.project.join(venv(provider))));
        }
        if let Some(venv) = &self.virtual_env {
            folders.push(site_packages(venv));
        }
        if let Some(home) = &self.home {
            folders.push(site_packages(&home.join(".local")));
        }
        folders.push(capi(
            Path::new("/usr/local/lib")
                .join(ANY_PYTHON)
                .join("dist-packages"),
        ));
        folders.push(capi(PathBuf::from("/usr/lib/python3/dist-packages")));
        folders.extend(self.library_path.iter().cloned());
        folders.extend(SYSTEM_FOLDERS.iter().map(PathBuf::from));
        folders
    }
}

const SYSTEM_FOLDERS: [&str; 3] = ["/usr/local/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib"];

/// The folder, beside the plugin's, that `make install` puts the build for `provider` in.
fn installed_build(provider: Provider) -> &'static str {
    match provider {
        Provider::Cpu => "onnxruntime",
        Provider::OpenVino => "onnxruntime-openvino",
        Provider::Cuda | Provider::TensorRt => "onnxruntime-gpu",
    }
}

/// The virtualenv, in the checkout, that holds the build for `provider`: `make deps` installs
/// `onnxruntime` into `.venv` and `onnxruntime-openvino` into `.venv-openvino` (both packages are
/// the Python module `onnxruntime`, so they cannot share one); `onnxruntime-gpu` is the user's to
/// install, into `.venv-gpu`.
fn venv(provider: Provider) -> &'static str {
    match provider {
        Provider::Cpu => ".venv",
        Provider::OpenVino => ".venv-openvino",
        Provider::Cuda | Provider::TensorRt => ".venv-gpu",
    }
}

/// The library of `provider` that must lie beside `libonnxruntime.so` for the build to have it.
fn provider_library(provider: Provider) -> Option<&'static str> {
    match provider {
        Provider::Cpu => None,
        Provider::OpenVino => Some("libonnxruntime_providers_openvino.so"),
        Provider::Cuda => Some("libonnxruntime_providers_cuda.so"),
        Provider::TensorRt => Some("libonnxruntime_providers_tensorrt.so"),
    }
}

/// The library for `provider`, by the order in the module's documentation.
pub fn find(places: &Places, provider: Provider) -> Result<PathBuf, InferenceError> {
    let given = [&places.explicit, &places.variable, &places.loaded];
    if let Some(path) = given
        .into_iter()
        .flatten()
        .find(|path| !path.as_os_str().is_empty())
    {
        return Ok(path.clone());
    }
    let folders = places.folders(provider);
    let found = folders
        .iter()
        .flat_map(|folder| expand(folder))
        .find_map(|folder| library_in(&folder, provider));
    found.ok_or_else(|| {
        let looked: Vec<String> = folders.iter().map(|f| f.display().to_string()).collect();
        InferenceError {
            file: format!("{}/{LIBRARY_PREFIX}*", looked[0]),
            message: format!(
                "no ONNX Runtime library for execution-provider={provider} (PyPI package {}) in \
                 {}: set the ort-library property or ORT_DYLIB_PATH, run `make install` (or \
                 `make deps` in the checkout), or install {} with pip",
                provider.package(),
                looked.join(", "),
                provider.package()
            ),
        }
    })
}

/// `folder` with its `python3*` component, if any, replaced by each folder of that name there.
fn expand(folder: &Path) -> Vec<PathBuf> {
    let components: Vec<_> = folder.components().collect();
    let Some(at) = components.iter().position(|c| c.as_os_str() == ANY_PYTHON) else {
        return vec![folder.to_owned()];
    };
    let parent: PathBuf = components[..at].iter().collect();
    let rest: PathBuf = components[at + 1..].iter().collect();
    let mut pythons: Vec<OsString> = fs::read_dir(&parent)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.file_name())
        .filter(|name| name.to_string_lossy().starts_with("python3"))
        .collect();
    pythons.sort();
    pythons
        .into_iter()
        .rev()
        .map(|python| parent.join(python).join(&rest))
        .collect()
}

/// The newest `libonnxruntime.so.<version>` in `folder` (or `libonnxruntime.so`), if the
/// build there has `provider`.
fn library_in(folder: &Path, provider: Provider) -> Option<PathBuf> {
    if let Some(companion) = provider_library(provider)
        && !folder.join(companion).is_file()
    {
        return None;
    }
    let newest = fs::read_dir(folder)
        .ok()?
        .flatten()
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
        .map(|(_, path)| path);
    newest.or_else(|| Some(folder.join(UNVERSIONED)).filter(|path| path.exists()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"").unwrap();
    }

    fn places(root: &Path, plugin: Option<PathBuf>) -> Places {
        Places {
            plugin,
            project: root.join("checkout"),
            home: Some(root.join("home")),
            ..Places::default()
        }
    }

    #[test]
    fn given_paths_come_first_as_they_are() {
        let explicit = PathBuf::from("/opt/ort/libonnxruntime.so");
        let variable = PathBuf::from("/env/libonnxruntime.so");
        let loaded = PathBuf::from("/loaded/libonnxruntime.so.1.24.1");
        let mut places = Places {
            explicit: Some(explicit.clone()),
            variable: Some(variable.clone()),
            loaded: Some(loaded.clone()),
            ..Places::default()
        };
        assert_eq!(find(&places, Provider::Cpu).unwrap(), explicit);
        places.explicit = Some(PathBuf::new());
        assert_eq!(find(&places, Provider::Cpu).unwrap(), variable);
        places.variable = None;
        assert_eq!(find(&places, Provider::OpenVino).unwrap(), loaded);
    }

    #[test]
    fn the_checkout_is_searched_only_while_the_plugin_runs_from_it() {
        let root = super::super::tests::Scratch::new("search-checkout");
        let capi = root.join("checkout/.venv/lib/python3.11/site-packages/onnxruntime/capi");
        for name in [
            "libonnxruntime.so.1.9.0",
            "libonnxruntime.so.1.23.2",
            "libonnxruntime.so.1.23.10",
            "libonnxruntime.so.2.0.0-dev",
            "libonnxruntime_providers_shared.so",
        ] {
            touch(&capi.join(name));
        }
        let openvino =
            root.join("checkout/.venv-openvino/lib/python3.12/site-packages/onnxruntime/capi");
        touch(&openvino.join("libonnxruntime.so.1.24.1"));
        touch(&openvino.join("libonnxruntime_providers_openvino.so"));

        let built = Some(root.join("checkout/target/release/libgsttalkinghead.so"));
        for plugin in [None, built] {
            let places = places(&root, plugin);
            assert_eq!(
                find(&places, Provider::Cpu).unwrap(),
                capi.join("libonnxruntime.so.1.23.10")
            );
            assert_eq!(
                find(&places, Provider::OpenVino).unwrap(),
                openvino.join("libonnxruntime.so.1.24.1")
            );
        }
        let installed = places(&root, Some(root.join("plugins/libgsttalkinghead.so")));
        assert!(
            !installed
                .folders(Provider::Cpu)
                .iter()
                .any(|f| f.starts_with(root.join("checkout")))
        );
    }

    #[test]
    fn beside_the_plugin_then_python_and_only_builds_with_the_provider() {
        let root = super::super::tests::Scratch::new("search-installed");
        let plugin = root.join("share/gstreamer-1.0/plugins/libgsttalkinghead.so");
        let beside = root.join("share/gstreamer-1.0/gst-talkinghead");
        touch(&beside.join("onnxruntime/libonnxruntime.so.1.23.2"));
        let user = root.join("home/.local/lib/python3.11/site-packages/onnxruntime/capi");
        touch(&user.join("libonnxruntime.so.1.22.0"));
        let places = places(&root, Some(plugin));

        assert_eq!(
            find(&places, Provider::Cpu).unwrap(),
            beside.join("onnxruntime/libonnxruntime.so.1.23.2")
        );
        // The user's onnxruntime has no OpenVINO: not taken for openvino.
        assert!(find(&places, Provider::OpenVino).is_err());
        touch(&user.join("libonnxruntime_providers_openvino.so"));
        assert_eq!(
            find(&places, Provider::OpenVino).unwrap(),
            user.join("libonnxruntime.so.1.22.0")
        );
        fs::remove_dir_all(beside.join("onnxruntime")).unwrap();
        assert_eq!(
            find(&places, Provider::Cpu).unwrap(),
            user.join("libonnxruntime.so.1.22.0")
        );
    }

    #[test]
    fn nothing_found_names_every_place_in_order() {
        let root = super::super::tests::Scratch::new("search-none");
        let places = places(&root, Some(root.join("plugins/libgsttalkinghead.so")));
        let err = find(&places, Provider::Cuda).unwrap_err();
        assert!(
            err.file
                .ends_with("gst-talkinghead/onnxruntime-gpu/libonnxruntime.so.*"),
            "{err}"
        );
        let message = &err.message;
        assert!(message.starts_with("no ONNX Runtime library for execution-provider=cuda (PyPI package onnxruntime-gpu) in "), "{message}");
        let order = [
            "gst-talkinghead/onnxruntime-gpu",
            "home/.local/lib/python3*/site-packages/onnxruntime/capi",
            "/usr/local/lib/python3*/dist-packages/onnxruntime/capi",
            "/usr/lib/python3/dist-packages/onnxruntime/capi",
            "/usr/local/lib,",
            "/usr/lib/x86_64-linux-gnu,",
            "/usr/lib:",
        ];
        let at: Vec<usize> = order
            .iter()
            .map(|part| {
                message
                    .find(part)
                    .unwrap_or_else(|| panic!("{part}: {message}"))
            })
            .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{message}");
        assert!(message.contains("make install"), "{message}");
    }
}
