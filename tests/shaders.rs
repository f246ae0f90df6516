//! Every WGSL file parses and validates with naga as core WGSL (no capabilities beyond it;
//! f16 storage with `SHADER_FLOAT16` only; the kernels on cooperative matrices with
//! `COOPERATIVE_MATRIX` too), for every choice of element types (`Elements`) and of tile edge
//! (`CoopEdge`); every kernel's entry point exists with the workgroup width the host assumes
//! and translates to SPIR-V (Vulkan), MSL (Metal) and HLSL (DX12) with every shape the host
//! sets. Needs no adapter, so a broken shader fails here even on a machine without a GPU, and
//! one that Metal or DX12 would reject fails here though neither runs on this machine.

use naga::valid::{Capabilities, ModuleInfo, ValidationFlags, Validator};
use rnn_wgpu::internals::gpu::{
    coop_emulation, CoopEdge, Elements, GemmTile, KSplit, Kernel, Shader, StepSite, StepTile,
};
use rnn_wgpu::Precision;

/// Every combination of element types: the host binds f16 and f32 buffers in any of the
/// three roles (an f16 product may write f32 partial sums, an f32 head read f16 states).
fn every_elements() -> Vec<Elements> {
    let both = [Precision::F32, Precision::F16];
    (both.iter())
        .flat_map(|&a| {
            both.iter()
                .flat_map(move |&b| both.map(|c| Elements { a, b, c }))
        })
        .collect()
}

/// The tile edges `shader` is compiled for: every `CoopEdge` for a shader on matrix units,
/// none for the others.
fn edges(shader: Shader) -> Vec<Option<CoopEdge>> {
    match shader.on_matrix_units() {
        true => CoopEdge::PREFERRED.map(Some).to_vec(),
        false => vec![None],
    }
}

/// `shader`'s source as the host compiles it for `elements` (on tiles of `edge`).
fn source(shader: Shader, elements: Elements, edge: Option<CoopEdge>) -> String {
    match edge {
        Some(edge) => shader.coop_source_for(elements, edge),
        None => shader.source_for(elements),
    }
}

fn parse(shader: Shader, elements: Elements, edge: Option<CoopEdge>) -> naga::Module {
    let source = source(shader, elements, edge);
    let module = naga::front::wgsl::parse_str(&source).unwrap_or_else(|e| {
        panic!(
            "{} ({elements:?}, {edge:?}) does not parse:\n{}",
            shader.file_name(),
            e.emit_to_string(&source)
        )
    });
    validate(shader, elements, edge, &module);
    module
}

fn validate(
    shader: Shader,
    elements: Elements,
    edge: Option<CoopEdge>,
    module: &naga::Module,
) -> ModuleInfo {
    let source = source(shader, elements, edge);
    let mut capabilities = match elements == Elements::F32 {
        true => Capabilities::empty(),
        false => Capabilities::SHADER_FLOAT16,
    };
    if shader.on_matrix_units() {
        capabilities |= Capabilities::SHADER_FLOAT16 | Capabilities::COOPERATIVE_MATRIX;
    }
    Validator::new(ValidationFlags::all(), capabilities)
        .validate(module)
        .unwrap_or_else(|e| {
            panic!(
                "{} ({elements:?}, {edge:?}) does not validate:\n{}",
                shader.file_name(),
                e.emit_to_string(&source)
            )
        })
}

/// Every workgroup shape `StepTile::for_shape` picks for a cell of `gates` gates, over batches
/// and hidden sizes from 1 up, within WebGPU's default 16 KiB of workgroup memory, 32 KiB and
/// NVIDIA's 48 KiB, with K split (a GPU) and not (a CPU adapter).
fn step_tiles(gates: usize) -> Vec<StepTile> {
    let mut tiles = Vec::new();
    for batch in [1, 3, 8, 9, 17, 65, 257, 4096] {
        for hidden in [1, 3, 17, 33, 65, 129, 257, 1024] {
            for storage_bytes in [16 << 10, 32 << 10, 48 << 10] {
                for split in [KSplit::Whole, KSplit::Fill] {
                    let site = StepSite {
                        batch,
                        hidden,
                        staged: gates,
                        storage_bytes,
                        split,
                    };
                    let tile = StepTile::for_shape(site);
                    assert!(
                        tile.storage_bytes(gates) <= storage_bytes as u64,
                        "{tile:?}"
                    );
                    assert!(tile.invocations() <= 256, "{tile:?}");
                    if !tiles.contains(&tile) {
                        tiles.push(tile);
                    }
                }
            }
        }
    }
    tiles
}

/// The named matrix-product tiles of `kernel`'s register block, and odd ones (a single
/// invocation, uneven groups, slices of 1 and 3).
fn gemm_tiles(kernel: Kernel) -> Vec<GemmTile> {
    let named = [
        GemmTile::TILED,
        GemmTile::SPLIT32,
        GemmTile::SPLIT64,
        GemmTile::WIDE128,
        GemmTile::WIDE64,
    ];
    let odd = ["4:1x1:1:1", "4:3x5:7:3", "8:2x1:3:2", "8:5x3:1:1"];
    let odd = odd.iter().map(|t| t.parse::<GemmTile>().unwrap());
    (named.into_iter().chain(odd))
        .filter(|t| t.kernel() == kernel)
        .collect()
}

/// The override constants the host may set for `kernel`: one empty set for a kernel whose
/// source fixes its shape.
fn constant_sets(kernel: Kernel) -> Vec<Vec<(&'static str, f64)>> {
    if !kernel.tiled() {
        return vec![Vec::new()];
    }
    // subgroups of llvmpipe's 8, NVIDIA's 32, a wave64 AMD's 64 (the emulation's 64 or 256)
    let subgroups = [8, 32, 64, 256];
    let gates = match kernel.shader() {
        // one subgroup per workgroup
        Shader::GemmCoop => {
            return subgroups
                .map(|size| vec![("WG_SIZE", size as f64)])
                .to_vec();
        }
        // K in 1, 2 or 4 parts, a subgroup each, within 256 invocations
        shader if shader.on_matrix_units() => {
            let parts = |size: u32| [1, 2, 4].into_iter().filter(move |p| size * p <= 256);
            return (subgroups.into_iter())
                .flat_map(|size| {
                    parts(size)
                        .map(move |p| vec![("WG_SIZE", (size * p) as f64), ("K_PARTS", p as f64)])
                })
                .collect();
        }
        Shader::Gemm => {
            let tiles = gemm_tiles(kernel);
            return tiles.iter().map(|t| t.constants().to_vec()).collect();
        }
        Shader::Lstm => 4,
        Shader::Gru => 3,
        _ => 1,
    };
    let tiles = step_tiles(gates);
    tiles.iter().map(|t| t.constants().to_vec()).collect()
}

#[test]
fn every_shader_parses_and_validates_as_core_wgsl() {
    for shader in Shader::ALL {
        for (elements, edge) in every_elements().into_iter().flat_map(|e| {
            let edges = edges(shader);
            edges.into_iter().map(move |edge| (e, edge))
        }) {
            parse(shader, elements, edge);
        }
    }
}

#[test]
fn every_kernel_entry_point_exists_with_the_host_workgroup_width() {
    for kernel in Kernel::ALL {
        let module = parse(kernel.shader(), Elements::F32, edges(kernel.shader())[0]);
        let entry = module
            .entry_points
            .iter()
            .find(|e| e.name == kernel.entry_point())
            .unwrap_or_else(|| {
                panic!(
                    "{kernel:?}: no entry point '{}' in {}",
                    kernel.entry_point(),
                    kernel.shader().file_name()
                )
            });
        assert_eq!(entry.stage, naga::ShaderStage::Compute, "{kernel:?}");
        // A tiled kernel's shape is an override: unknown until its pipeline is made.
        let overridden = entry.workgroup_size_overrides.is_some();
        assert_eq!(
            overridden,
            kernel.tiled(),
            "{kernel:?}: workgroup size set per pipeline"
        );
        if !kernel.tiled() {
            assert_eq!(
                entry.workgroup_size[0],
                kernel.workgroup_width(),
                "{kernel:?}: workgroup width in WGSL and on the host differ"
            );
        }
    }
}

/// Each kernel's entry point, with its override constants set as the host sets them (every
/// workgroup shape of a tiled kernel, every tile edge of one on matrix units), written as
/// SPIR-V, MSL and HLSL.
#[test]
fn every_kernel_translates_to_spirv_msl_and_hlsl() {
    let mut failed = Vec::new();
    let variants = [Elements::F32, Elements::all(Precision::F16)];
    for (kernel, elements) in Kernel::ALL.iter().flat_map(|&k| variants.map(|e| (k, e))) {
        let shader = kernel.shader();
        for edge in edges(shader) {
            let module = parse(shader, elements, edge);
            let info = validate(shader, elements, edge, &module);
            failed.extend(translation_failures(
                kernel,
                (elements, edge),
                &module,
                &info,
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// What fails when `kernel`'s entry point of `module` (compiled for `variant`) is written by
/// each backend with each of its sets of override constants, described.
fn translation_failures(
    kernel: Kernel,
    variant: (Elements, Option<CoopEdge>),
    module: &naga::Module,
    info: &ModuleInfo,
) -> Vec<String> {
    let mut failed = Vec::new();
    for constants in constant_sets(kernel) {
        let mut values = naga::back::PipelineConstants::default();
        for (name, value) in &constants {
            values.insert(name.to_string(), *value);
        }
        let entry = (naga::ShaderStage::Compute, kernel.entry_point());
        let (module, info) = match naga::back::pipeline_constants::process_overrides(
            module,
            info,
            Some(entry),
            &values,
        ) {
            Ok(resolved) => resolved,
            Err(e) => {
                failed.push(format!(
                    "{kernel:?} {variant:?} {constants:?}: overrides: {e}"
                ));
                continue;
            }
        };
        for (backend, result) in translations(kernel, &module, &info) {
            if let Err(e) = result {
                failed.push(format!(
                    "{kernel:?} {variant:?} {constants:?}: {backend}: {e}"
                ));
            }
        }
    }
    failed
}

/// `kernel`'s entry point of `module` written by each backend: its name and the outcome.
fn translations(
    kernel: Kernel,
    module: &naga::Module,
    info: &ModuleInfo,
) -> [(&'static str, Result<(), String>); 3] {
    let entry = || Some((naga::ShaderStage::Compute, kernel.entry_point().to_string()));
    let spirv = naga::back::spv::write_vec(
        module,
        info,
        &naga::back::spv::Options::default(),
        Some(&naga::back::spv::PipelineOptions {
            shader_stage: naga::ShaderStage::Compute,
            entry_point: kernel.entry_point().to_string(),
        }),
    );
    // Metal has cooperative matrices (simdgroup matrices) from MSL 2.3.
    let msl_options = naga::back::msl::Options {
        lang_version: (2, 3),
        ..Default::default()
    };
    let msl = naga::back::msl::write_string(
        module,
        info,
        &msl_options,
        &naga::back::msl::PipelineOptions {
            entry_point: entry(),
            ..Default::default()
        },
    );
    // DX12 takes f16 from shader model 6.2 on (wgpu compiles with DXC there).
    let hlsl_options = naga::back::hlsl::Options {
        shader_model: naga::back::hlsl::ShaderModel::V6_2,
        ..Default::default()
    };
    let hlsl_pipeline = naga::back::hlsl::PipelineOptions {
        entry_point: entry(),
    };
    let mut hlsl = String::new();
    // naga writes no HLSL for cooperative matrices (DX12 lists none: these kernels never run
    // there).
    let written = match kernel.shader().on_matrix_units() {
        true => Ok(()),
        false => naga::back::hlsl::Writer::new(&mut hlsl, &hlsl_options, &hlsl_pipeline)
            .write(module, info, None)
            .map(drop),
    };
    [
        ("SPIR-V", spirv.map(drop).map_err(|e| e.to_string())),
        ("MSL", msl.map(drop).map_err(|e| e.to_string())),
        ("HLSL", written.map_err(|e| e.to_string())),
    ]
}

#[test]
fn every_shader_entry_point_is_a_listed_kernel() {
    for shader in Shader::ALL {
        for entry in parse(shader, Elements::F32, edges(shader)[0]).entry_points {
            assert!(
                Kernel::ALL
                    .iter()
                    .any(|k| k.shader() == shader && k.entry_point() == entry.name),
                "{}: entry point '{}' is not in Kernel::ALL",
                shader.file_name(),
                entry.name
            );
        }
    }
}

/// No function of the matrix-product or fused-step kernels keeps a function-scope array: their
/// accumulators are vectors, matrices and structs of them, which compilers keep in registers,
/// where an indexed array may be put in local memory (what docs/benchmarks/2026-11-27.md, in
/// its H200 section, suspects made the register prefetch of an earlier GEMM slower there). Checked on naga's module, from
/// which every backend writes its code.
#[test]
fn the_products_and_steps_keep_no_function_scope_arrays() {
    let mut found = Vec::new();
    let steps = [Shader::Lstm, Shader::Gru, Shader::Rnn];
    let on_units = [Shader::LstmCoop, Shader::GruCoop, Shader::RnnCoop];
    let shaders = [Shader::Gemm].into_iter().chain(steps).chain(on_units);
    for (shader, edge) in shaders.flat_map(|s| edges(s).into_iter().map(move |e| (s, e))) {
        let module = parse(shader, Elements::all(Precision::F16), edge);
        let functions = (module.functions.iter().map(|(_, f)| f))
            .chain(module.entry_points.iter().map(|e| &e.function));
        for function in functions {
            for (_, local) in function.local_variables.iter() {
                if let naga::TypeInner::Array { .. } = module.types[local.ty].inner {
                    found.push(format!(
                        "{}: {} holds the array {:?}",
                        shader.file_name(),
                        function.name.as_deref().unwrap_or("?"),
                        local.name
                    ));
                }
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The kernels on cooperative matrices need naga's COOPERATIVE_MATRIX capability (wgpu grants
/// it with EXPERIMENTAL_COOPERATIVE_MATRIX): without it validation fails, so the tests above
/// that pass with it check something.
#[test]
fn the_cooperative_matrix_kernels_need_their_capability() {
    let elements = Elements::all(Precision::F16);
    let shaders = Shader::ALL.into_iter().filter(|s| s.on_matrix_units());
    for (shader, edge) in shaders.flat_map(|s| CoopEdge::PREFERRED.map(|e| (s, e))) {
        let source = shader.coop_source_for(elements, edge);
        let module = naga::front::wgsl::parse_str(&source).unwrap();
        let refused = Validator::new(ValidationFlags::all(), Capabilities::SHADER_FLOAT16)
            .validate(&module)
            .unwrap_err();
        assert!(
            format!("{refused:?}").contains("COOPERATIVE_MATRIX"),
            "{} {edge:?}: {refused:?}",
            shader.file_name()
        );
    }
}

/// The emulated kernels on cooperative matrices (`MatrixUnits::Emulate`) are core WGSL with
/// f16: they validate without COOPERATIVE_MATRIX, for every choice of element types and tile
/// edge, and keep their entry points.
#[test]
fn the_emulated_cooperative_matrix_kernels_are_core_wgsl() {
    let shaders = Shader::ALL.into_iter().filter(|s| s.on_matrix_units());
    let variants = every_elements()
        .into_iter()
        .flat_map(|e| CoopEdge::PREFERRED.map(|t| (e, t)));
    let variants: Vec<_> = variants.collect();
    for (shader, (elements, edge)) in shaders.flat_map(|s| variants.iter().map(move |&v| (s, v))) {
        let name = format!("{} {edge:?}", shader.file_name());
        let source = coop_emulation::source_for(shader, elements, edge);
        let module = naga::front::wgsl::parse_str(&source).unwrap_or_else(|e| {
            panic!(
                "emulated {name} ({elements:?}) does not parse:\n{}",
                e.emit_to_string(&source)
            )
        });
        Validator::new(ValidationFlags::all(), Capabilities::SHADER_FLOAT16)
            .validate(&module)
            .unwrap_or_else(|e| {
                panic!(
                    "emulated {name} ({elements:?}) does not validate:\n{}",
                    e.emit_to_string(&source)
                )
            });
        for kernel in Kernel::ALL.into_iter().filter(|k| k.shader() == shader) {
            assert!(
                (module.entry_points.iter()).any(|e| e.name == kernel.entry_point()),
                "emulated {name}: no {}",
                kernel.entry_point()
            );
        }
    }
}
