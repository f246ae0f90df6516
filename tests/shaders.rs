//! Every WGSL file parses and validates with naga, and every kernel's entry point exists with
//! the workgroup width the host assumes. Needs no adapter, so a broken shader fails here even
//! on a machine without a GPU.

use rnn_wgpu::gpu::{Kernel, Shader};

fn parse(shader: Shader) -> naga::Module {
    let source = shader.source();
    let module = naga::front::wgsl::parse_str(source).unwrap_or_else(|e| {
        panic!(
            "{} does not parse:\n{}",
            shader.file_name(),
            e.emit_to_string(source)
        )
    });
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities(shader))
        .validate(&module)
        .unwrap_or_else(|e| {
            panic!(
                "{} does not validate:\n{}",
                shader.file_name(),
                e.emit_to_string(source)
            )
        });
    module
}

/// What validation may allow: only what the file declares it needs (`Shader::features`).
fn capabilities(shader: Shader) -> naga::valid::Capabilities {
    if shader.features().contains(wgpu::Features::SUBGROUP) {
        naga::valid::Capabilities::SUBGROUP
    } else {
        naga::valid::Capabilities::empty()
    }
}

#[test]
fn every_shader_parses_and_validates_with_only_the_capabilities_it_declares() {
    for shader in Shader::ALL {
        parse(shader);
    }
}

#[test]
fn every_kernel_entry_point_exists_with_the_host_workgroup_width() {
    for kernel in Kernel::ALL {
        let module = parse(kernel.shader());
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
        assert_eq!(
            entry.workgroup_size[0],
            kernel.workgroup_width(),
            "{kernel:?}: workgroup width in WGSL and on the host differ"
        );
    }
}

#[test]
fn every_shader_entry_point_is_a_listed_kernel() {
    for shader in Shader::ALL {
        for entry in parse(shader).entry_points {
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
