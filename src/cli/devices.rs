//! `rnn-wgpu devices`: every adapter wgpu finds and the limits that matter here.

use anyhow::{bail, Result};
use rnn_wgpu::internals::gpu::{enumerate_adapters, tuning};
use rnn_wgpu::Gpu;
use std::process::ExitCode;

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

pub fn run() -> Result<ExitCode> {
    let adapters = enumerate_adapters();
    if adapters.is_empty() {
        // Gpu::new gives the full explanation of how to get an adapter.
        Gpu::new()?;
        bail!("wgpu found no adapter");
    }
    let opened = Gpu::new();
    let chosen = opened.as_ref().ok().map(|gpu| gpu.info.clone());
    for (k, adapter) in adapters.iter().enumerate() {
        let (info, limits) = (&adapter.info, &adapter.limits);
        let has = |feature| {
            if adapter.features.contains(feature) {
                "yes"
            } else {
                "no"
            }
        };
        let used = chosen.as_ref().is_some_and(|c| {
            c.name == info.name && c.backend == info.backend && c.device == info.device
        });
        println!(
            "[{k}] {}{}\n    backend {:?}, type {:?}, driver {} {}\n    max storage binding {}, max buffer {}, workgroup storage {} KiB, max workgroups/dim {}\n    timestamp queries {} (inside encoders {}, inside passes {})",
            info.name,
            if used { "   <- used" } else { "" },
            info.backend,
            info.device_type,
            info.driver,
            info.driver_info,
            mib(limits.max_storage_buffer_binding_size),
            mib(limits.max_buffer_size),
            limits.max_compute_workgroup_storage_size / 1024,
            limits.max_compute_workgroups_per_dimension,
            has(wgpu::Features::TIMESTAMP_QUERY),
            has(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS),
            has(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
        );
        let shapes: Vec<String> = (adapter.cooperative_matrices.iter())
            .map(|p| {
                let (m, n, k) = (p.m_size, p.n_size, p.k_size);
                format!("{m}x{n}x{k} {:?}->{:?}", p.ab_type, p.cr_type)
            })
            .collect();
        println!(
            "    f16 in shaders {}, subgroups {}-{}, cooperative matrices {}",
            has(wgpu::Features::SHADER_F16),
            info.subgroup_min_size,
            info.subgroup_max_size,
            if shapes.is_empty() {
                "none".to_string()
            } else {
                shapes.join(", ")
            }
        );
    }
    match opened {
        Ok(gpu) => {
            // What `rnn-wgpu tune` left for the adapter in use.
            let cache = tuning::cache_path();
            let tuned = cache
                .as_ref()
                .map(|path| (path, tuning::read_tuning(&gpu, path)));
            match tuned {
                None => println!("tuning: off (RNN_WGPU_TUNING=off)"),
                Some((path, Ok(t))) if t.is_empty() => {
                    println!(
                        "tuning: none for this adapter in {} (rnn-wgpu tune)",
                        path.display()
                    )
                }
                Some((path, Ok(t))) => println!(
                    "tuning: {} products, {} recurrences, {} f16 step kernels and {} splits \
                     of the steps' K for this adapter in {}",
                    t.products.len(),
                    t.recurrences.len(),
                    t.steps.len(),
                    t.splits.len(),
                    path.display()
                ),
                Some((_, Err(e))) => println!("tuning: {e}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: no adapter could be opened: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
