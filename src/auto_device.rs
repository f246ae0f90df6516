//! What `--device auto` runs on: the GPU engine where wgpu offers a real GPU (discrete,
//! integrated or virtual), else the CPU engine, which on a machine without a GPU is far faster
//! than a software Vulkan driver (llvmpipe ran a (32, 100, 2, 128) LSTM training step about 90x
//! slower than the CPU engine on the same cores: README). A pure function of the adapters'
//! descriptions, so the rule is tested on made-up lists.

use std::fmt;

/// What `--device auto` needs to know of one adapter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterKind {
    /// The adapter's name as wgpu reports it (`NVIDIA H200`, `llvmpipe (LLVM 15.0.6, ...)`).
    pub name: String,
    /// Discrete, integrated or virtual GPU, CPU (a software driver), or unknown.
    pub device_type: wgpu::DeviceType,
}

/// The engine a command runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// The GPU engine, on wgpu's adapter.
    Gpu,
    /// The CPU reference engine.
    Cpu,
}

/// The engine `--device auto` chose and why, for the command's first line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutoDevice {
    /// The engine chosen.
    pub engine: Engine,
    /// The reason, naming the adapter chosen or the adapters passed over.
    pub why: String,
}

impl fmt::Display for AutoDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let engine = match self.engine {
            Engine::Gpu => "gpu",
            Engine::Cpu => "cpu",
        };
        write!(f, "device: {engine} ({})", self.why)
    }
}

/// How much `auto` prefers an adapter as a GPU: none for CPUs and unknown kinds.
pub(crate) fn gpu_rank(device_type: wgpu::DeviceType) -> Option<u8> {
    match device_type {
        wgpu::DeviceType::DiscreteGpu => Some(3),
        wgpu::DeviceType::IntegratedGpu => Some(2),
        wgpu::DeviceType::VirtualGpu => Some(1),
        wgpu::DeviceType::Cpu | wgpu::DeviceType::Other => None,
    }
}

/// The GPU engine where `named` (`WGPU_ADAPTER_NAME`, which the GPU engine then opens) is set or
/// an adapter is a real GPU (the most capable kind named), else the CPU engine, saying which
/// adapters there were.
pub fn choose(adapters: &[AdapterKind], named: Option<&str>) -> AutoDevice {
    if let Some(named) = named.filter(|n| !n.is_empty()) {
        return AutoDevice {
            engine: Engine::Gpu,
            why: format!("WGPU_ADAPTER_NAME='{named}'"),
        };
    }
    let best = (adapters.iter())
        .filter_map(|a| gpu_rank(a.device_type).map(|rank| (rank, a)))
        .max_by_key(|(rank, _)| *rank);
    if let Some((_, gpu)) = best {
        return AutoDevice {
            engine: Engine::Gpu,
            why: format!("'{}', {}", gpu.name, kind(gpu.device_type)),
        };
    }
    let why = match adapters {
        [] => "no GPU adapter found".to_string(),
        [only] => format!(
            "the only adapter is '{}', {}; --device gpu runs on it",
            only.name,
            kind(only.device_type)
        ),
        all => {
            let names: Vec<String> = all.iter().map(|a| format!("'{}'", a.name)).collect();
            format!(
                "no adapter is a GPU ({}); --device gpu runs on the first",
                names.join(", ")
            )
        }
    };
    AutoDevice {
        engine: Engine::Cpu,
        why,
    }
}

fn kind(device_type: wgpu::DeviceType) -> &'static str {
    match device_type {
        wgpu::DeviceType::DiscreteGpu => "a discrete GPU",
        wgpu::DeviceType::IntegratedGpu => "an integrated GPU",
        wgpu::DeviceType::VirtualGpu => "a virtual GPU",
        wgpu::DeviceType::Cpu => "a CPU",
        wgpu::DeviceType::Other => "of an unknown kind",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wgpu::DeviceType::{Cpu, DiscreteGpu, IntegratedGpu, Other, VirtualGpu};

    fn adapters(list: &[(&str, wgpu::DeviceType)]) -> Vec<AdapterKind> {
        (list.iter())
            .map(|&(name, device_type)| AdapterKind {
                name: name.into(),
                device_type,
            })
            .collect()
    }

    #[test]
    fn a_discrete_gpu_is_chosen_over_an_integrated_one_and_llvmpipe() {
        let list = adapters(&[
            ("llvmpipe (LLVM 15.0.6, 256 bits)", Cpu),
            ("Intel(R) UHD Graphics 630", IntegratedGpu),
            ("NVIDIA H200", DiscreteGpu),
        ]);
        let chosen = choose(&list, None);
        assert_eq!(chosen.engine, Engine::Gpu);
        assert_eq!(
            chosen.to_string(),
            "device: gpu ('NVIDIA H200', a discrete GPU)"
        );
    }

    #[test]
    fn an_integrated_or_virtual_gpu_is_a_gpu() {
        for kind in [IntegratedGpu, VirtualGpu] {
            let list = adapters(&[("llvmpipe", Cpu), ("Apple M2", kind)]);
            let chosen = choose(&list, None);
            assert_eq!(chosen.engine, Engine::Gpu, "{kind:?}");
            assert!(chosen.why.contains("Apple M2"), "{}", chosen.why);
        }
    }

    #[test]
    fn only_llvmpipe_runs_the_cpu_engine_and_says_why() {
        let list = adapters(&[("llvmpipe (LLVM 15.0.6, 256 bits)", Cpu)]);
        let chosen = choose(&list, None);
        assert_eq!(chosen.engine, Engine::Cpu);
        assert_eq!(
            chosen.to_string(),
            "device: cpu (the only adapter is 'llvmpipe (LLVM 15.0.6, 256 bits)', a CPU; \
             --device gpu runs on it)"
        );
        let two = adapters(&[("llvmpipe", Cpu), ("mystery", Other)]);
        assert_eq!(choose(&two, None).engine, Engine::Cpu);
    }

    #[test]
    fn no_adapter_runs_the_cpu_engine() {
        let chosen = choose(&[], None);
        assert_eq!(chosen.engine, Engine::Cpu);
        assert_eq!(chosen.why, "no GPU adapter found");
    }

    #[test]
    fn a_named_adapter_runs_the_gpu_engine() {
        let list = adapters(&[("llvmpipe", Cpu)]);
        let chosen = choose(&list, Some("llvmpipe"));
        assert_eq!(chosen.engine, Engine::Gpu);
        assert_eq!(chosen.why, "WGPU_ADAPTER_NAME='llvmpipe'");
        assert_eq!(choose(&list, Some("")).engine, Engine::Cpu);
    }
}
