//! The compiled kernels: one bind-group layout per `Layout`, one shader module per `Shader`,
//! and a pipeline per kernel (per `PipelineShape` for the kernels shaped by `override`
//! constants), each compiled on first use and kept.

use super::kernels::{Kernel, Layout, Shader, Slot};
use super::tiles::PipelineShape;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

pub(crate) struct Pipelines {
    device: wgpu::Device,
    layouts: Vec<wgpu::BindGroupLayout>,
    pipeline_layouts: Vec<wgpu::PipelineLayout>,
    modules: [OnceLock<wgpu::ShaderModule>; Shader::ALL.len()],
    pipelines: [OnceLock<wgpu::ComputePipeline>; Kernel::ALL.len()],
    /// Pipelines of `Kernel::tiled` kernels, one per workgroup shape used so far.
    tiled_pipelines: Mutex<HashMap<(Kernel, PipelineShape), wgpu::ComputePipeline>>,
}

impl Pipelines {
    pub(crate) fn new(device: &wgpu::Device) -> Pipelines {
        let layouts: Vec<wgpu::BindGroupLayout> = Layout::ALL
            .iter()
            .map(|&layout| bind_group_layout(device, layout))
            .collect();
        let pipeline_layouts = layouts
            .iter()
            .map(|bgl| {
                device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: None,
                    bind_group_layouts: &[Some(bgl)],
                    immediate_size: 0,
                })
            })
            .collect();
        Pipelines {
            device: device.clone(),
            layouts,
            pipeline_layouts,
            modules: Default::default(),
            pipelines: std::array::from_fn(|_| OnceLock::new()),
            tiled_pipelines: Mutex::default(),
        }
    }

    pub(crate) fn bind_group_layout(&self, layout: Layout) -> &wgpu::BindGroupLayout {
        &self.layouts[layout.index()]
    }

    /// The kernel's pipeline, compiled on first use.
    pub(crate) fn pipeline(&self, kernel: Kernel) -> &wgpu::ComputePipeline {
        self.pipelines[kernel.index()].get_or_init(|| self.create_pipeline(kernel, &[]))
    }

    /// A `Kernel::tiled` kernel's pipeline for workgroup shape `shape`, compiled on first use.
    pub(crate) fn tiled_pipeline(
        &self,
        kernel: Kernel,
        shape: PipelineShape,
    ) -> wgpu::ComputePipeline {
        let mut cache = self.tiled_pipelines.lock().unwrap();
        (cache.entry((kernel, shape)))
            .or_insert_with(|| self.create_pipeline(kernel, &shape.constants()))
            .clone()
    }

    fn create_pipeline(&self, kernel: Kernel, constants: &[(&str, f64)]) -> wgpu::ComputePipeline {
        let shader = kernel.shader();
        let module = self.modules[shader.index()].get_or_init(|| {
            self.device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(shader.file_name()),
                    source: wgpu::ShaderSource::Wgsl(shader.source().into()),
                })
        });
        self.device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(kernel.entry_point()),
                layout: Some(&self.pipeline_layouts[kernel.layout().index()]),
                module,
                entry_point: Some(kernel.entry_point()),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    ..Default::default()
                },
                cache: None,
            })
    }
}

fn bind_group_layout(device: &wgpu::Device, layout: Layout) -> wgpu::BindGroupLayout {
    let entries: Vec<wgpu::BindGroupLayoutEntry> = layout
        .slots()
        .iter()
        .enumerate()
        .map(|(binding, slot)| wgpu::BindGroupLayoutEntry {
            binding: binding as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: match slot {
                Slot::Params => wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: true,
                    min_binding_size: None,
                },
                Slot::Read | Slot::ReadWrite => wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: *slot == Slot::Read,
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
            },
            count: None,
        })
        .collect();
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("rnn-wgpu layout"),
        entries: &entries,
    })
}
