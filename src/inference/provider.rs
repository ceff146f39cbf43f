//! Where the generator runs: ONNX Runtime's execution providers, the device and the precision.
//!
//! [`Acceleration::check`] is pure: it refuses a device or precision the provider cannot honour
//! before anything loads. [`Acceleration::register`] then appends the provider to a session
//! builder so that a failure is an error, never a silent fall back to ONNX Runtime's CPU kernels:
//!
//! - `openvino`: the OpenVINO provider with `device_type`, `num_of_threads`, `cache_dir`; on a
//!   CPU the precision goes in as OpenVINO's `INFERENCE_PRECISION_HINT` through `load_config`
//!   (inline JSON: ONNX Runtime reads a file path there as no configuration at all), on a GPU as
//!   the provider's `precision`. The session may not place a node on the CPU provider
//!   (`session.disable_cpu_ep_fallback`): the whole model runs in OpenVINO or the session fails.
//! - `cuda`: the CUDA provider on a device id, in the model's own precision (fp32).
//! - `tensorrt`: TensorRT on a device id, fp16 if asked, its engines and timing cache in the
//!   cache folder; the CUDA provider behind it takes what TensorRT cannot, as ONNX Runtime
//!   documents.

use std::fmt;
use std::path::PathBuf;

use ort::ep::{self, ArbitrarilyConfigurableExecutionProvider, ExecutionProvider};
use ort::session::builder::SessionBuilder;

/// An ONNX Runtime execution provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Provider {
    /// ONNX Runtime's own CPU kernels.
    #[default]
    Cpu,
    OpenVino,
    Cuda,
    TensorRt,
}

impl Provider {
    pub const ALL: [Provider; 4] = [
        Provider::Cpu,
        Provider::OpenVino,
        Provider::Cuda,
        Provider::TensorRt,
    ];

    /// The name users set (the element's property value).
    pub fn name(self) -> &'static str {
        match self {
            Provider::Cpu => "cpu",
            Provider::OpenVino => "openvino",
            Provider::Cuda => "cuda",
            Provider::TensorRt => "tensorrt",
        }
    }

    /// ONNX Runtime's name for it, as `GetAvailableProviders` lists it.
    pub fn runtime_name(self) -> &'static str {
        match self {
            Provider::Cpu => ep::CPU::NAME,
            Provider::OpenVino => ep::OpenVINO::NAME,
            Provider::Cuda => ep::CUDA::NAME,
            Provider::TensorRt => ep::TensorRT::NAME,
        }
    }

    /// The PyPI package whose ONNX Runtime library has this provider.
    pub fn package(self) -> &'static str {
        match self {
            Provider::Cpu => "onnxruntime",
            Provider::OpenVino => "onnxruntime-openvino",
            Provider::Cuda | Provider::TensorRt => "onnxruntime-gpu",
        }
    }

    /// Whether the ONNX Runtime library this process loaded has the provider.
    pub fn is_available(self) -> Result<bool, String> {
        match self {
            Provider::Cpu => ep::CPU::is_available(),
            Provider::OpenVino => ep::OpenVINO::is_available(),
            Provider::Cuda => ep::CUDA::is_available(),
            Provider::TensorRt => ep::TensorRT::is_available(),
        }
        .map_err(|e| format!("cannot list ONNX Runtime's execution providers: {e}"))
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The precision the generator computes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    Fp32,
    Bf16,
    Fp16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::Fp16 => "fp16",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What this CPU computes natively, for the precisions OpenVINO runs on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuFeatures {
    /// `avx512_bf16` or `amx_bf16`.
    pub bf16: bool,
    /// `avx512_fp16` or `amx_fp16`.
    pub fp16: bool,
}

impl CpuFeatures {
    /// This machine's, from `/proc/cpuinfo` (none where it cannot be read).
    pub fn detect() -> Self {
        std::fs::read_to_string("/proc/cpuinfo")
            .map(|info| Self::from_cpuinfo(&info))
            .unwrap_or_default()
    }

    /// From the first `flags` line of a `/proc/cpuinfo`.
    pub fn from_cpuinfo(info: &str) -> Self {
        let flags: Vec<&str> = info
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == "flags").then_some(value)
            })
            .map(|value| value.split_whitespace().collect())
            .unwrap_or_default();
        let has = |names: [&str; 2]| names.iter().any(|name| flags.contains(name));
        CpuFeatures {
            bf16: has(["avx512_bf16", "amx_bf16"]),
            fp16: has(["avx512_fp16", "amx_fp16"]),
        }
    }
}

/// How the generator runs: a provider, its device, a precision and where compiled models are
/// kept. The default is ONNX Runtime's CPU provider in fp32.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Acceleration {
    pub provider: Provider,
    /// The provider's device; `None`: its default (`CPU` for OpenVINO, device 0 for CUDA and
    /// TensorRT).
    pub device: Option<String>,
    pub precision: Precision,
    /// Where OpenVINO's compiled blobs and TensorRT's engines are kept between starts.
    pub cache_dir: Option<PathBuf>,
}

/// The device a checked [`Acceleration`] runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    Cpu,
    /// An OpenVINO device name (`CPU`, `GPU`, `GPU.1`, `NPU`, `AUTO:GPU,CPU`, ...).
    OpenVino(String),
    /// A CUDA device id.
    Gpu(i32),
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("CPU"),
            Device::OpenVino(name) => f.write_str(name),
            Device::Gpu(id) => write!(f, "{id}"),
        }
    }
}

impl Acceleration {
    /// The device it runs on, or why the provider cannot run it as asked: a device it does not
    /// have, or a precision it would not honour (OpenVINO on a CPU without native bf16 or fp16
    /// quietly computes in another precision, so that is refused here).
    pub fn check(&self, cpu: CpuFeatures) -> Result<Device, String> {
        let device = self.device.as_deref().filter(|d| !d.is_empty());
        let refuse = |why: &str| {
            Err(format!(
                "precision={} on execution-provider={}{}: {why}",
                self.precision,
                self.provider,
                device.map_or(String::new(), |d| format!(" device={d}"))
            ))
        };
        match self.provider {
            Provider::Cpu => {
                if let Some(device) = device {
                    return Err(format!(
                        "device={device}: execution-provider=cpu runs on this machine's CPU \
                         and takes no device; unset it"
                    ));
                }
                match self.precision {
                    Precision::Fp32 => Ok(Device::Cpu),
                    _ => refuse(
                        "ONNX Runtime's CPU provider computes fp32 models in fp32; use \
                         execution-provider=openvino for bf16 on a CPU that has it",
                    ),
                }
            }
            Provider::OpenVino => {
                let name = device.unwrap_or("CPU").to_owned();
                let kind = name.split('.').next().unwrap_or_default();
                match (kind, self.precision) {
                    (_, Precision::Fp32) => {}
                    ("CPU", Precision::Bf16) if !cpu.bf16 => {
                        return refuse(
                            "this CPU has no bf16 instructions (avx512_bf16 or amx_bf16), so \
                             OpenVINO would compute in fp32",
                        );
                    }
                    ("CPU", Precision::Fp16) if !cpu.fp16 => {
                        return refuse(
                            "this CPU has no fp16 instructions (avx512_fp16 or amx_fp16), so \
                             OpenVINO would compute in another precision",
                        );
                    }
                    ("CPU", _) | ("GPU", Precision::Fp16) => {}
                    ("GPU", _) => return refuse("OpenVINO runs a GPU in fp32 or fp16"),
                    _ => {
                        return refuse(
                            "a precision other than fp32 is set on OpenVINO's CPU or GPU \
                             devices only",
                        );
                    }
                }
                Ok(Device::OpenVino(name))
            }
            Provider::Cuda | Provider::TensorRt => {
                let id = match device {
                    None => 0,
                    Some(device) => device
                        .parse::<i32>()
                        .ok()
                        .filter(|id| *id >= 0)
                        .ok_or_else(|| {
                            format!(
                                "device={device}: execution-provider={} takes a CUDA device \
                                 number (0, 1, ...)",
                                self.provider
                            )
                        })?,
                };
                match (self.provider, self.precision) {
                    (_, Precision::Fp32) | (Provider::TensorRt, Precision::Fp16) => {
                        Ok(Device::Gpu(id))
                    }
                    (Provider::Cuda, _) => refuse(
                        "the CUDA provider computes the model in its own precision (fp32); \
                         use execution-provider=tensorrt for fp16",
                    ),
                    _ => refuse("TensorRT is set up here for fp32 or fp16"),
                }
            }
        }
    }

    /// Appends the provider to `builder`, as [`check`](Self::check) allowed it on `device`;
    /// `threads` (0: the provider's choice) are OpenVINO's. Any failure is an error.
    pub fn register(
        &self,
        builder: SessionBuilder,
        device: &Device,
        threads: usize,
    ) -> ort::Result<SessionBuilder> {
        let cache_dir = self
            .cache_dir
            .as_ref()
            .filter(|dir| !dir.as_os_str().is_empty())
            .map(|dir| dir.display().to_string());
        let providers = match (self.provider, device) {
            (Provider::Cpu, _) => return Ok(builder),
            (Provider::OpenVino, Device::OpenVino(name)) => {
                let mut openvino = ep::OpenVINO::default().with_device_type(name);
                if threads > 0 {
                    openvino = openvino.with_num_threads(threads);
                }
                if let Some(dir) = &cache_dir {
                    openvino = openvino.with_cache_dir(dir);
                }
                let kind = name.split('.').next().unwrap_or_default();
                openvino = match (kind, self.precision) {
                    ("CPU", precision) => {
                        let hint = match precision {
                            Precision::Fp32 => "f32",
                            Precision::Bf16 => "bf16",
                            Precision::Fp16 => "f16",
                        };
                        openvino.with_arbitrary_config(
                            "load_config",
                            format!(r#"{{"CPU":{{"INFERENCE_PRECISION_HINT":"{hint}"}}}}"#),
                        )
                    }
                    ("GPU", Precision::Fp16) => openvino.with_precision("FP16"),
                    ("GPU", _) => openvino.with_precision("FP32"),
                    _ => openvino,
                };
                vec![openvino.build().error_on_failure()]
            }
            (Provider::Cuda, Device::Gpu(id)) => {
                vec![
                    ep::CUDA::default()
                        .with_device_id(*id)
                        .build()
                        .error_on_failure(),
                ]
            }
            (Provider::TensorRt, Device::Gpu(id)) => {
                let mut tensorrt = ep::TensorRT::default()
                    .with_device_id(*id)
                    .with_fp16(self.precision == Precision::Fp16);
                if let Some(dir) = &cache_dir {
                    tensorrt = tensorrt
                        .with_engine_cache(true)
                        .with_engine_cache_path(dir)
                        .with_timing_cache(true)
                        .with_timing_cache_path(dir);
                }
                vec![
                    tensorrt.build().error_on_failure(),
                    ep::CUDA::default()
                        .with_device_id(*id)
                        .build()
                        .error_on_failure(),
                ]
            }
            (provider, device) => {
                return Err(ort::Error::new(format!(
                    "{provider} cannot run on device {device}"
                )));
            }
        };
        let builder = builder.with_execution_providers(providers)?;
        if self.provider == Provider::OpenVino {
            return Ok(builder.with_config_entry("session.disable_cpu_ep_fallback", "1")?);
        }
        Ok(builder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZEN4: CpuFeatures = CpuFeatures {
        bf16: true,
        fp16: false,
    };

    fn acceleration(
        provider: Provider,
        device: Option<&str>,
        precision: Precision,
    ) -> Acceleration {
        Acceleration {
            provider,
            device: device.map(String::from),
            precision,
            cache_dir: None,
        }
    }

    #[test]
    fn flags_come_from_cpuinfo() {
        let info = "processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 avx512vl\nbugs\t: none\n";
        assert_eq!(CpuFeatures::from_cpuinfo(info), ZEN4);
        let sapphire = "flags\t: avx512_fp16 amx_bf16 amx_tile\n";
        assert_eq!(
            CpuFeatures::from_cpuinfo(sapphire),
            CpuFeatures {
                bf16: true,
                fp16: true
            }
        );
        assert_eq!(
            CpuFeatures::from_cpuinfo("model name: x\n"),
            CpuFeatures::default()
        );
    }

    #[test]
    fn each_provider_runs_its_default_device_in_fp32() {
        use Precision::Fp32;
        let device = |provider, name| acceleration(provider, name, Fp32).check(ZEN4);
        assert_eq!(device(Provider::Cpu, None), Ok(Device::Cpu));
        assert_eq!(device(Provider::Cpu, Some("")), Ok(Device::Cpu));
        assert_eq!(
            device(Provider::OpenVino, None),
            Ok(Device::OpenVino("CPU".into()))
        );
        assert_eq!(
            device(Provider::OpenVino, Some("GPU.1")),
            Ok(Device::OpenVino("GPU.1".into()))
        );
        assert_eq!(device(Provider::Cuda, None), Ok(Device::Gpu(0)));
        assert_eq!(device(Provider::TensorRt, Some("1")), Ok(Device::Gpu(1)));
    }

    #[test]
    fn a_device_the_provider_has_not_is_refused() {
        use Precision::Fp32;
        let err = acceleration(Provider::Cpu, Some("GPU"), Fp32)
            .check(ZEN4)
            .unwrap_err();
        assert!(
            err.starts_with("device=GPU: execution-provider=cpu"),
            "{err}"
        );
        for device in ["GPU", "-1", "0x1"] {
            let err = acceleration(Provider::Cuda, Some(device), Fp32)
                .check(ZEN4)
                .unwrap_err();
            assert!(err.contains("CUDA device number"), "{err}");
        }
    }

    #[test]
    fn precisions_are_honoured_or_refused_by_name() {
        use Precision::*;
        let check =
            |provider, device, precision| acceleration(provider, device, precision).check(ZEN4);
        assert!(check(Provider::OpenVino, None, Bf16).is_ok());
        assert!(check(Provider::OpenVino, Some("GPU"), Fp16).is_ok());
        assert!(check(Provider::TensorRt, None, Fp16).is_ok());
        let refused = [
            (
                Provider::Cpu,
                None,
                Bf16,
                "precision=bf16 on execution-provider=cpu: ",
            ),
            (
                Provider::Cpu,
                None,
                Fp16,
                "precision=fp16 on execution-provider=cpu: ",
            ),
            (
                Provider::OpenVino,
                None,
                Fp16,
                "precision=fp16 on execution-provider=openvino: this CPU has no fp16",
            ),
            (
                Provider::OpenVino,
                Some("GPU"),
                Bf16,
                "precision=bf16 on execution-provider=openvino device=GPU: ",
            ),
            (
                Provider::OpenVino,
                Some("NPU"),
                Bf16,
                "precision=bf16 on execution-provider=openvino device=NPU: ",
            ),
            (
                Provider::Cuda,
                None,
                Fp16,
                "precision=fp16 on execution-provider=cuda: ",
            ),
            (
                Provider::TensorRt,
                Some("0"),
                Bf16,
                "precision=bf16 on execution-provider=tensorrt device=0: ",
            ),
        ];
        for (provider, device, precision, message) in refused {
            let err = check(provider, device, precision).unwrap_err();
            assert!(err.starts_with(message), "{err}");
        }
        let without_bf16 = acceleration(Provider::OpenVino, None, Bf16)
            .check(CpuFeatures::default())
            .unwrap_err();
        assert!(
            without_bf16.contains("no bf16 instructions"),
            "{without_bf16}"
        );
    }
}
