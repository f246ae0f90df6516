//! Buffers shaped like the parameters: the model's own, their gradients (the workspace) and
//! the optimizer's state, one buffer per tensor in `param_names` order.

use super::context::Gpu;
use crate::config::ModelConfig;
use crate::error::Error;

/// One cell's parameter buffers.
pub(crate) struct CellBuffers {
    pub weight_ih: wgpu::Buffer,
    pub weight_hh: wgpu::Buffer,
    pub bias_ih: wgpu::Buffer,
    pub bias_hh: wgpu::Buffer,
}

/// Parameter buffers, cells as `Params::cells` orders them, then the head.
pub(crate) struct ParamBuffers {
    pub cells: Vec<CellBuffers>,
    pub head_weight: wgpu::Buffer,
    pub head_bias: wgpu::Buffer,
}

impl ParamBuffers {
    pub fn new(gpu: &Gpu, config: &ModelConfig, what: &str) -> Result<Self, Error> {
        let buffer = |name: &str, words| gpu.storage_buffer(&format!("{what} {name}"), words);
        let mut shapes = crate::params::param_shapes(config).into_iter();
        let mut next = || {
            let (name, shape) = shapes.next().expect("a shape per tensor");
            buffer(&name, shape.iter().product())
        };
        Ok(ParamBuffers {
            cells: (0..config.cells())
                .map(|_| {
                    Ok(CellBuffers {
                        weight_ih: next()?,
                        weight_hh: next()?,
                        bias_ih: next()?,
                        bias_hh: next()?,
                    })
                })
                .collect::<Result<_, Error>>()?,
            head_weight: next()?,
            head_bias: next()?,
        })
    }

    /// Every buffer in `param_names` order.
    pub fn all(&self) -> Vec<&wgpu::Buffer> {
        self.cells
            .iter()
            .flat_map(|c| [&c.weight_ih, &c.weight_hh, &c.bias_ih, &c.bias_hh])
            .chain([&self.head_weight, &self.head_bias])
            .collect()
    }
}
