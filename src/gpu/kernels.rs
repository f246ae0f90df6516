//! Every WGSL file and entry point of the crate, named by enums rather than strings, with the
//! bind-group layout each kernel expects and the element types its storage buffers are
//! compiled for. Pipelines are compiled on first use and cached in the `Gpu` context.

use crate::precision::Precision;

// The kernels' sizes that the memory plan (crate::internals::plan) reads too: here rather than in the
// recorder and the pass, which use the plan, so that the plan uses nothing that uses it.

/// Bytes bound for every kernel's parameter struct (the largest, `GemmParams`, is 64).
pub(crate) const PARAMS_BINDING_SIZE: u64 = 64;

/// Rows per block of `column_block_sums` (`COLUMN_BLOCK` in reduce.wgsl).
const COLUMN_BLOCK: usize = 256;

/// Into how many blocks of rows the bias gradients' column sums over `rows` rows are split
/// (1: one pass, no blocks). The blocks' sums go to `Gpu::scratch_partials`.
pub(crate) fn column_blocks(rows: usize) -> usize {
    rows.div_ceil(COLUMN_BLOCK)
}

/// The element types of a pipeline's storage buffers where a shader lets them vary, as WGSL
/// aliases put in front of its source: `a_elem`, `b_elem`, `c_elem` (gemm.wgsl's A, B and C;
/// reduce.wgsl's input; stack.wgsl's sources and destination) and `stored`, the type of the
/// cells' activations, gates, their gradients and W_hh (= `a`). The other buffers (biases,
/// carries, losses, parameter gradients, optimizer state) are always f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Elements {
    pub a: Precision,
    pub b: Precision,
    pub c: Precision,
}

impl Elements {
    /// Every buffer f32: the default, and the only choice for shaders without aliases.
    pub const F32: Elements = Elements::all(Precision::F32);

    pub const fn all(precision: Precision) -> Elements {
        Elements {
            a: precision,
            b: precision,
            c: precision,
        }
    }

    pub(crate) fn uses_f16(self) -> bool {
        [self.a, self.b, self.c].contains(&Precision::F16)
    }

    /// The WGSL that declares the aliases (and enables f16 where one is f16), after the
    /// `enables` a shader needs.
    pub fn prelude(self, enables: &str) -> String {
        let f16 = "enable f16;\n";
        let enable = if self.uses_f16() && !enables.contains(f16) {
            f16
        } else {
            ""
        };
        format!(
            "{enable}{enables}alias a_elem = {};\nalias b_elem = {};\nalias c_elem = {};\nalias stored = a_elem;\n",
            self.a.name(),
            self.b.name(),
            self.c.name()
        )
    }
}

/// A WGSL source file in `shaders/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shader {
    Gemm,
    /// The matrix products on cooperative matrices (wgpu's experimental extension).
    GemmCoop,
    Rnn,
    Lstm,
    Gru,
    Loss,
    Reduce,
    Optim,
    Stack,
}

impl Shader {
    pub const ALL: [Shader; 9] = [
        Shader::Gemm,
        Shader::GemmCoop,
        Shader::Rnn,
        Shader::Lstm,
        Shader::Gru,
        Shader::Loss,
        Shader::Reduce,
        Shader::Optim,
        Shader::Stack,
    ];

    pub fn file_name(self) -> &'static str {
        match self {
            Shader::Gemm => "gemm.wgsl",
            Shader::GemmCoop => "gemm_coop.wgsl",
            Shader::Rnn => "rnn.wgsl",
            Shader::Lstm => "lstm.wgsl",
            Shader::Gru => "gru.wgsl",
            Shader::Loss => "loss.wgsl",
            Shader::Reduce => "reduce.wgsl",
            Shader::Optim => "optim.wgsl",
            Shader::Stack => "stack.wgsl",
        }
    }

    /// The source as compiled for `elements`: the aliases' prelude, then the file(s).
    pub fn source_for(self, elements: Elements) -> String {
        elements.prelude(self.enables()) + self.source()
    }

    /// The `enable` directives the shader needs beyond f16's.
    pub fn enables(self) -> &'static str {
        match self {
            // its tiles are f16 whatever the buffers hold
            Shader::GemmCoop => "enable f16;\nenable wgpu_cooperative_matrix;\n",
            _ => "",
        }
    }

    /// The shader's own text (without the prelude that `source_for` puts in front).
    pub fn source(self) -> &'static str {
        match self {
            Shader::Gemm => concat!(
                include_str!("../../shaders/gemm_layout.wgsl"),
                include_str!("../../shaders/gemm.wgsl")
            ),
            Shader::GemmCoop => concat!(
                include_str!("../../shaders/gemm_layout.wgsl"),
                include_str!("../../shaders/gemm_coop.wgsl")
            ),
            Shader::Rnn => concat!(
                include_str!("../../shaders/finite.wgsl"),
                include_str!("../../shaders/step.wgsl"),
                include_str!("../../shaders/rnn.wgsl"),
                include_str!("../../shaders/fused.wgsl"),
                include_str!("../../shaders/persistent.wgsl")
            ),
            Shader::Lstm => concat!(
                include_str!("../../shaders/finite.wgsl"),
                include_str!("../../shaders/step.wgsl"),
                include_str!("../../shaders/lstm.wgsl"),
                include_str!("../../shaders/fused.wgsl"),
                include_str!("../../shaders/persistent.wgsl")
            ),
            Shader::Gru => concat!(
                include_str!("../../shaders/finite.wgsl"),
                include_str!("../../shaders/step.wgsl"),
                include_str!("../../shaders/gru.wgsl"),
                include_str!("../../shaders/fused.wgsl"),
                include_str!("../../shaders/persistent.wgsl")
            ),
            Shader::Loss => concat!(
                include_str!("../../shaders/finite.wgsl"),
                include_str!("../../shaders/loss.wgsl")
            ),
            Shader::Reduce => concat!(
                include_str!("../../shaders/finite.wgsl"),
                include_str!("../../shaders/reduce.wgsl")
            ),
            Shader::Optim => concat!(
                include_str!("../../shaders/finite.wgsl"),
                include_str!("../../shaders/optim.wgsl")
            ),
            Shader::Stack => include_str!("../../shaders/stack.wgsl"),
        }
    }
}

/// A compute entry point. Its CPU twin in `cpu::` has the same name where one exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// A 4x4 block of C per invocation, 8x8 in the other: the matrix products' family (see
    /// gemm.wgsl); tile, K-slice and K-split set per pipeline (`GemmTile`).
    Gemm4x4,
    Gemm8x8,
    /// Adds the parts of a product whose K was split over workgroups (see gemm.wgsl).
    GemmSplitSum,
    /// A 32x32 block of C per workgroup of one subgroup on 16x16x16 cooperative matrices, f16
    /// A and B (see gemm_coop.wgsl); the workgroup is the subgroup size (`PipelineShape::Coop`).
    GemmCoop,
    /// One time step: the recurrent product of a tile of (rows, units) with the cell's maths in
    /// its epilogue (see fused.wgsl); the workgroup shape is set per pipeline (`StepTile`).
    RnnForward,
    RnnBackward,
    LstmForward,
    LstmBackward,
    GruForward,
    GruBackward,
    /// A segment's steps in one workgroup (see persistent.wgsl): for small models.
    RnnForwardPersistent,
    RnnBackwardPersistent,
    LstmForwardPersistent,
    LstmBackwardPersistent,
    GruForwardPersistent,
    GruBackwardPersistent,
    MseLoss,
    CrossEntropyLoss,
    RowNorms,
    RowSums,
    ColumnSums,
    ColumnBlockSums,
    GradSumSquares,
    GradNorm,
    SgdStep,
    AdamStep,
    RmspropStep,
    ReverseSteps,
    JoinForward,
    JoinBackward,
    CopyElements,
}

/// How a kernel's bindings are laid out: `group(0)`, storage buffers and one uniform holding
/// the per-dispatch parameters at a dynamic offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// a, b, bias (read); c (read_write); params
    Gemm,
    /// gates, hs, cs (read_write); bias_hh (read); params; dh, dc, dgates, dc_carry
    /// (read_write); lengths (read); h_carry (read_write); weight_hh (read)
    Step,
    /// outputs, targets (read); row_loss, doutputs (read_write); params; lengths (read)
    Loss,
    /// x (read); out (read_write); params
    Reduce,
    /// grad (read); param, state_a, state_b, reduction (read_write); params
    Optim,
    /// src0, src1 (read); dst (read_write); params; lengths (read)
    Stack,
}

/// One binding slot of a layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    Read,
    ReadWrite,
    Params,
}

impl Layout {
    pub const ALL: [Layout; 6] = [
        Layout::Gemm,
        Layout::Step,
        Layout::Loss,
        Layout::Reduce,
        Layout::Optim,
        Layout::Stack,
    ];

    pub fn slots(self) -> &'static [Slot] {
        use Slot::*;
        match self {
            Layout::Gemm => &[Read, Read, Read, ReadWrite, Params],
            Layout::Step => &[
                ReadWrite, ReadWrite, ReadWrite, Read, Params, ReadWrite, ReadWrite, ReadWrite,
                ReadWrite, Read, ReadWrite, Read,
            ],
            Layout::Loss => &[Read, Read, ReadWrite, ReadWrite, Params, Read],
            Layout::Reduce => &[Read, ReadWrite, Params],
            Layout::Optim => &[Read, ReadWrite, ReadWrite, ReadWrite, ReadWrite, Params],
            Layout::Stack => &[Read, Read, ReadWrite, Params, Read],
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl Kernel {
    pub const ALL: [Kernel; 31] = [
        Kernel::Gemm4x4,
        Kernel::Gemm8x8,
        Kernel::GemmSplitSum,
        Kernel::GemmCoop,
        Kernel::RnnForward,
        Kernel::RnnBackward,
        Kernel::LstmForward,
        Kernel::LstmBackward,
        Kernel::GruForward,
        Kernel::GruBackward,
        Kernel::RnnForwardPersistent,
        Kernel::RnnBackwardPersistent,
        Kernel::LstmForwardPersistent,
        Kernel::LstmBackwardPersistent,
        Kernel::GruForwardPersistent,
        Kernel::GruBackwardPersistent,
        Kernel::MseLoss,
        Kernel::CrossEntropyLoss,
        Kernel::RowNorms,
        Kernel::RowSums,
        Kernel::ColumnSums,
        Kernel::ColumnBlockSums,
        Kernel::GradSumSquares,
        Kernel::GradNorm,
        Kernel::SgdStep,
        Kernel::AdamStep,
        Kernel::RmspropStep,
        Kernel::ReverseSteps,
        Kernel::JoinForward,
        Kernel::JoinBackward,
        Kernel::CopyElements,
    ];

    pub fn entry_point(self) -> &'static str {
        match self {
            Kernel::Gemm4x4 => "gemm_4x4",
            Kernel::Gemm8x8 => "gemm_8x8",
            Kernel::GemmSplitSum => "gemm_split_sum",
            Kernel::GemmCoop => "gemm_coop",
            Kernel::RnnForward | Kernel::LstmForward | Kernel::GruForward => "step_forward",
            Kernel::RnnBackward | Kernel::LstmBackward | Kernel::GruBackward => "step_backward",
            Kernel::RnnForwardPersistent
            | Kernel::LstmForwardPersistent
            | Kernel::GruForwardPersistent => "persistent_forward",
            Kernel::RnnBackwardPersistent
            | Kernel::LstmBackwardPersistent
            | Kernel::GruBackwardPersistent => "persistent_backward",
            Kernel::MseLoss => "mse_loss",
            Kernel::CrossEntropyLoss => "cross_entropy_loss",
            Kernel::RowNorms => "row_norms",
            Kernel::RowSums => "row_sums",
            Kernel::ColumnSums => "column_sums",
            Kernel::ColumnBlockSums => "column_block_sums",
            Kernel::GradSumSquares => "grad_sum_squares",
            Kernel::GradNorm => "grad_norm",
            Kernel::SgdStep => "sgd_step",
            Kernel::AdamStep => "adam_step",
            Kernel::RmspropStep => "rmsprop_step",
            Kernel::ReverseSteps => "reverse_steps",
            Kernel::JoinForward => "join_forward",
            Kernel::JoinBackward => "join_backward",
            Kernel::CopyElements => "copy_elements",
        }
    }

    pub fn shader(self) -> Shader {
        match self {
            Kernel::Gemm4x4 | Kernel::Gemm8x8 | Kernel::GemmSplitSum => Shader::Gemm,
            Kernel::GemmCoop => Shader::GemmCoop,
            Kernel::RnnForward
            | Kernel::RnnBackward
            | Kernel::RnnForwardPersistent
            | Kernel::RnnBackwardPersistent => Shader::Rnn,
            Kernel::LstmForward
            | Kernel::LstmBackward
            | Kernel::LstmForwardPersistent
            | Kernel::LstmBackwardPersistent => Shader::Lstm,
            Kernel::GruForward
            | Kernel::GruBackward
            | Kernel::GruForwardPersistent
            | Kernel::GruBackwardPersistent => Shader::Gru,
            Kernel::MseLoss | Kernel::CrossEntropyLoss => Shader::Loss,
            Kernel::RowNorms | Kernel::RowSums | Kernel::ColumnSums | Kernel::ColumnBlockSums => {
                Shader::Reduce
            }
            Kernel::GradSumSquares
            | Kernel::GradNorm
            | Kernel::SgdStep
            | Kernel::AdamStep
            | Kernel::RmspropStep => Shader::Optim,
            Kernel::ReverseSteps
            | Kernel::JoinForward
            | Kernel::JoinBackward
            | Kernel::CopyElements => Shader::Stack,
        }
    }

    pub fn layout(self) -> Layout {
        match self.shader() {
            Shader::Gemm | Shader::GemmCoop => Layout::Gemm,
            Shader::Rnn | Shader::Lstm | Shader::Gru => Layout::Step,
            Shader::Loss => Layout::Loss,
            Shader::Reduce => Layout::Reduce,
            Shader::Optim => Layout::Optim,
            Shader::Stack => Layout::Stack,
        }
    }

    /// Whether the kernel's workgroup shape is set per pipeline, by WGSL `override` constants
    /// (`StepTile` for the fused steps, `GemmTile` for the products), rather than written in
    /// its source.
    pub fn tiled(self) -> bool {
        matches!(
            self,
            Kernel::Gemm4x4
                | Kernel::Gemm8x8
                | Kernel::GemmCoop
                | Kernel::RnnForward
                | Kernel::RnnBackward
                | Kernel::LstmForward
                | Kernel::LstmBackward
                | Kernel::GruForward
                | Kernel::GruBackward
        )
    }

    /// Invocations per workgroup along x where the source fixes it (not `tiled` kernels).
    pub fn workgroup_width(self) -> u32 {
        match self {
            Kernel::RowNorms
            | Kernel::RowSums
            | Kernel::GradSumSquares
            | Kernel::GradNorm
            | Kernel::RnnForwardPersistent
            | Kernel::RnnBackwardPersistent
            | Kernel::LstmForwardPersistent
            | Kernel::LstmBackwardPersistent
            | Kernel::GruForwardPersistent
            | Kernel::GruBackwardPersistent => 256,
            _ => 64,
        }
    }
}
