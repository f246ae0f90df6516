//! The compiled kernels: one bind-group layout per `Layout`, one shader module per `Shader`
//! and `Elements` (and `CoopEdge` for the shaders on matrix units), and a pipeline per kernel
//! and `Elements` (and per `PipelineShape` for the kernels shaped by `override` constants),
//! each compiled on first use and kept.

use super::coop_emulation;
use super::kernels::{CoopEdge, Elements, Kernel, Layout, Shader, Slot};
use super::tiles::PipelineShape;
use std::collections::HashMap;
use std::sync::Mutex;

/// Which pipeline: the kernel, its buffers' element types and (`Kernel::tiled` kernels only)
/// its workgroup shape.
type PipelineKey = (Kernel, Elements, Option<PipelineShape>);

/// Which shader module: the shader, its buffers' element types and (shaders on matrix units
/// only) its tiles' edge.
type ModuleKey = (Shader, Elements, Option<CoopEdge>);

pub(crate) struct Pipelines {
    device: wgpu::Device,
    layouts: Vec<wgpu::BindGroupLayout>,
    pipeline_layouts: Vec<wgpu::PipelineLayout>,
    modules: Mutex<HashMap<ModuleKey, wgpu::ShaderModule>>,
    /// Whether the shaders on matrix units (gemm_coop.wgsl, step_coop.wgsl) are compiled with
    /// their matrix operations emulated (`coop_emulation::source_for`).
    emulate_matrix_units: bool,
    pipelines: Mutex<HashMap<PipelineKey, wgpu::ComputePipeline>>,
}

impl Pipelines {
    pub(crate) fn new(device: &wgpu::Device, emulate_matrix_units: bool) -> Pipelines {
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
            modules: Mutex::default(),
            emulate_matrix_units,
            pipelines: Mutex::default(),
        }
    }

    pub(crate) fn bind_group_layout(&self, layout: Layout) -> &wgpu::BindGroupLayout {
        &self.layouts[layout.index()]
    }

    /// The pipeline of `kernel` over buffers of `elements`, in workgroup shape `shape` for a
    /// `Kernel::tiled` kernel (None for the others), compiled on first use.
    pub(crate) fn pipeline(
        &self,
        kernel: Kernel,
        elements: Elements,
        shape: Option<PipelineShape>,
    ) -> wgpu::ComputePipeline {
        let mut cache = self.pipelines.lock().unwrap();
        (cache.entry((kernel, elements, shape)))
            .or_insert_with(|| self.create_pipeline(kernel, elements, shape))
            .clone()
    }

    /// The kernels compiled so far (in any element types and shape), each once.
    pub(crate) fn compiled_kernels(&self) -> Vec<Kernel> {
        let mut kernels: Vec<Kernel> = (self.pipelines.lock().unwrap().keys())
            .map(|(kernel, _, _)| *kernel)
            .collect();
        kernels.sort_by_key(|k| Kernel::ALL.iter().position(|all| all == k));
        kernels.dedup();
        kernels
    }

    fn create_pipeline(
        &self,
        kernel: Kernel,
        elements: Elements,
        shape: Option<PipelineShape>,
    ) -> wgpu::ComputePipeline {
        let shader = kernel.shader();
        let edge = shape.and_then(PipelineShape::coop_edge);
        assert_eq!(
            edge.is_some(),
            shader.on_matrix_units(),
            "{kernel:?} in {shape:?}"
        );
        let module = (self.modules.lock().unwrap())
            .entry((shader, elements, edge))
            .or_insert_with(|| {
                let source = match edge {
                    Some(edge) if self.emulate_matrix_units => {
                        coop_emulation::source_for(shader, elements, edge)
                    }
                    Some(edge) => shader.coop_source_for(elements, edge),
                    None => shader.source_for(elements),
                };
                self.device
                    .create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(shader.file_name()),
                        source: wgpu::ShaderSource::Wgsl(source.into()),
                    })
            })
            .clone();
        let constants = shape.map(|shape| shape.constants()).unwrap_or_default();
        self.device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(kernel.entry_point()),
                layout: Some(&self.pipeline_layouts[kernel.layout().index()]),
                module: &module,
                entry_point: Some(kernel.entry_point()),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
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
