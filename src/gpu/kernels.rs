//! Every WGSL file and entry point of the crate, named by enums rather than strings, with the
//! bind-group layout each kernel expects. Pipelines are compiled on first use and cached in
//! the `Gpu` context.

/// A WGSL source file in `shaders/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shader {
    Gemm,
    GemmWide,
    GemmSplit,
    GemmSplit64,
    GemmLanes,
    GemmTexels,
    Pack,
    Rnn,
    Lstm,
    Gru,
    Loss,
    Reduce,
    Optim,
    Stack,
}

impl Shader {
    pub const ALL: [Shader; 14] = [
        Shader::Gemm,
        Shader::GemmWide,
        Shader::GemmSplit,
        Shader::GemmSplit64,
        Shader::GemmLanes,
        Shader::GemmTexels,
        Shader::Pack,
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
            Shader::GemmWide => "gemm_wide.wgsl",
            Shader::GemmSplit => "split_32x32.wgsl",
            Shader::GemmSplit64 => "split_64x64.wgsl",
            Shader::GemmLanes => "gemm_lanes.wgsl",
            Shader::GemmTexels => "gemm_texels.wgsl",
            Shader::Pack => "pack.wgsl",
            Shader::Rnn => "rnn.wgsl",
            Shader::Lstm => "lstm.wgsl",
            Shader::Gru => "gru.wgsl",
            Shader::Loss => "loss.wgsl",
            Shader::Reduce => "reduce.wgsl",
            Shader::Optim => "optim.wgsl",
            Shader::Stack => "stack.wgsl",
        }
    }

    pub fn source(self) -> &'static str {
        match self {
            Shader::Gemm => concat!(
                include_str!("../../shaders/gemm_params.wgsl"),
                include_str!("../../shaders/gemm_loads.wgsl"),
                include_str!("../../shaders/gemm.wgsl")
            ),
            Shader::GemmWide => concat!(
                include_str!("../../shaders/gemm_params.wgsl"),
                include_str!("../../shaders/gemm_loads.wgsl"),
                include_str!("../../shaders/gemm_wide.wgsl")
            ),
            Shader::GemmSplit => concat!(
                include_str!("../../shaders/gemm_params.wgsl"),
                include_str!("../../shaders/gemm_loads.wgsl"),
                include_str!("../../shaders/split_32x32.wgsl"),
                include_str!("../../shaders/gemm_split.wgsl"),
                include_str!("../../shaders/split_sum.wgsl")
            ),
            Shader::GemmSplit64 => concat!(
                include_str!("../../shaders/gemm_params.wgsl"),
                include_str!("../../shaders/gemm_loads.wgsl"),
                include_str!("../../shaders/split_64x64.wgsl"),
                include_str!("../../shaders/gemm_split.wgsl")
            ),
            Shader::GemmLanes => concat!(
                include_str!("../../shaders/gemm_params.wgsl"),
                include_str!("../../shaders/tile.wgsl"),
                include_str!("../../shaders/gemm_lanes.wgsl")
            ),
            Shader::GemmTexels => concat!(
                include_str!("../../shaders/gemm_params.wgsl"),
                include_str!("../../shaders/tile.wgsl"),
                include_str!("../../shaders/gemm_texels.wgsl")
            ),
            Shader::Pack => include_str!("../../shaders/pack.wgsl"),
            Shader::Rnn => concat!(
                include_str!("../../shaders/step.wgsl"),
                include_str!("../../shaders/rnn.wgsl"),
                include_str!("../../shaders/fused.wgsl"),
                include_str!("../../shaders/persistent.wgsl")
            ),
            Shader::Lstm => concat!(
                include_str!("../../shaders/step.wgsl"),
                include_str!("../../shaders/lstm.wgsl"),
                include_str!("../../shaders/fused.wgsl"),
                include_str!("../../shaders/persistent.wgsl")
            ),
            Shader::Gru => concat!(
                include_str!("../../shaders/step.wgsl"),
                include_str!("../../shaders/gru.wgsl"),
                include_str!("../../shaders/fused.wgsl"),
                include_str!("../../shaders/persistent.wgsl")
            ),
            Shader::Loss => include_str!("../../shaders/loss.wgsl"),
            Shader::Reduce => include_str!("../../shaders/reduce.wgsl"),
            Shader::Optim => include_str!("../../shaders/optim.wgsl"),
            Shader::Stack => include_str!("../../shaders/stack.wgsl"),
        }
    }

    /// Device features the file's code needs beyond core WGSL.
    pub fn features(self) -> wgpu::Features {
        match self {
            Shader::GemmLanes | Shader::GemmTexels => wgpu::Features::SUBGROUP,
            _ => wgpu::Features::empty(),
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// A compute entry point. Its CPU twin in `cpu::` has the same name where one exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// 64x64 tiles through workgroup memory: for GPUs.
    GemmTiled,
    /// `gemm_tiled` loading the next K-slice before the FMAs of this one: a candidate for
    /// tuning (see gemm.wgsl).
    GemmTiledPrefetch,
    /// 128x128 tiles, 8x8 per invocation: for GPUs' large products, where tuning finds it
    /// faster (see gemm_wide.wgsl).
    GemmWide,
    /// 32x32 tiles with K split four ways inside the workgroup: for GPUs, products with few
    /// tiles and a long K (see gemm_split.wgsl).
    GemmSplit32x32,
    /// 64x64 tiles with K split two ways inside a workgroup of 512 invocations.
    GemmSplit64x64,
    /// Adds the parts of a product whose K was split over workgroups (see gemm_split.wgsl).
    GemmSplitSum,
    /// One block of C per invocation, straight from storage: for CPU adapters (see gemm.wgsl).
    GemmBlock16x16,
    GemmBlock32x4,
    GemmBlock4x32,
    /// 8 lanes sharing rows through subgroup broadcasts: for llvmpipe (see gemm_lanes.wgsl).
    GemmLanes32x8,
    GemmLanes64x8,
    GemmLanes8x16,
    /// gemm_lanes_64x8 reading its operands from textures, per layout of A (see
    /// gemm_texels.wgsl).
    GemmTexelsNn,
    GemmTexelsTn,
    /// A matrix block into texels, transposed or unaligned (see pack.wgsl).
    PackTexels,
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
}

/// How a kernel's bindings are laid out: `group(0)`, storage buffers and one uniform holding
/// the per-dispatch parameters at a dynamic offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// a, b, bias (read); c (read_write); params
    Gemm,
    /// a, b (textures); bias (read); c (read_write); params
    GemmTexels,
    /// src (read); dst (storage texture, written); params
    Pack,
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
    /// A 2D texture of rgba32float texels, read with textureLoad.
    Texels,
    /// The same, written with textureStore.
    TexelsOut,
}

impl Layout {
    pub const ALL: [Layout; 8] = [
        Layout::Gemm,
        Layout::GemmTexels,
        Layout::Pack,
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
            Layout::GemmTexels => &[Texels, Texels, Read, ReadWrite, Params],
            Layout::Pack => &[Read, TexelsOut, Params],
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
    pub const ALL: [Kernel; 41] = [
        Kernel::GemmTiled,
        Kernel::GemmTiledPrefetch,
        Kernel::GemmWide,
        Kernel::GemmSplit32x32,
        Kernel::GemmSplit64x64,
        Kernel::GemmSplitSum,
        Kernel::GemmBlock16x16,
        Kernel::GemmBlock32x4,
        Kernel::GemmBlock4x32,
        Kernel::GemmLanes32x8,
        Kernel::GemmLanes64x8,
        Kernel::GemmLanes8x16,
        Kernel::GemmTexelsNn,
        Kernel::GemmTexelsTn,
        Kernel::PackTexels,
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
    ];

    pub fn entry_point(self) -> &'static str {
        match self {
            Kernel::GemmTiled => "gemm_tiled",
            Kernel::GemmTiledPrefetch => "gemm_tiled_prefetch",
            Kernel::GemmWide => "gemm_wide",
            Kernel::GemmSplit32x32 => "gemm_split_32x32",
            Kernel::GemmSplit64x64 => "gemm_split_64x64",
            Kernel::GemmSplitSum => "gemm_split_sum",
            Kernel::GemmBlock16x16 => "gemm_block_16x16",
            Kernel::GemmBlock32x4 => "gemm_block_32x4",
            Kernel::GemmBlock4x32 => "gemm_block_4x32",
            Kernel::GemmLanes32x8 => "gemm_lanes_32x8",
            Kernel::GemmLanes64x8 => "gemm_lanes_64x8",
            Kernel::GemmLanes8x16 => "gemm_lanes_8x16",
            Kernel::GemmTexelsNn => "gemm_texels_nn",
            Kernel::GemmTexelsTn => "gemm_texels_tn",
            Kernel::PackTexels => "pack_texels",
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
        }
    }

    pub fn shader(self) -> Shader {
        match self {
            Kernel::GemmTiled
            | Kernel::GemmTiledPrefetch
            | Kernel::GemmBlock16x16
            | Kernel::GemmBlock32x4
            | Kernel::GemmBlock4x32 => Shader::Gemm,
            Kernel::GemmWide => Shader::GemmWide,
            Kernel::GemmSplit32x32 | Kernel::GemmSplitSum => Shader::GemmSplit,
            Kernel::GemmSplit64x64 => Shader::GemmSplit64,
            Kernel::GemmLanes32x8 | Kernel::GemmLanes64x8 | Kernel::GemmLanes8x16 => {
                Shader::GemmLanes
            }
            Kernel::GemmTexelsNn | Kernel::GemmTexelsTn => Shader::GemmTexels,
            Kernel::PackTexels => Shader::Pack,
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
            Kernel::ReverseSteps | Kernel::JoinForward | Kernel::JoinBackward => Shader::Stack,
        }
    }

    pub fn layout(self) -> Layout {
        match self.shader() {
            Shader::Gemm
            | Shader::GemmWide
            | Shader::GemmSplit
            | Shader::GemmSplit64
            | Shader::GemmLanes => Layout::Gemm,
            Shader::GemmTexels => Layout::GemmTexels,
            Shader::Pack => Layout::Pack,
            Shader::Rnn | Shader::Lstm | Shader::Gru => Layout::Step,
            Shader::Loss => Layout::Loss,
            Shader::Reduce => Layout::Reduce,
            Shader::Optim => Layout::Optim,
            Shader::Stack => Layout::Stack,
        }
    }

    /// Whether the kernel's workgroup shape is set per pipeline, by WGSL `override` constants
    /// (`StepTile` for the fused steps), rather than written in its source.
    pub fn tiled(self) -> bool {
        matches!(
            self,
            Kernel::RnnForward
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
            Kernel::GemmTiled | Kernel::GemmTiledPrefetch | Kernel::GemmWide => 16,
            Kernel::GemmSplit64x64 => 256,
            Kernel::GemmBlock16x16
            | Kernel::GemmBlock32x4
            | Kernel::GemmBlock4x32
            | Kernel::GemmLanes32x8
            | Kernel::GemmLanes64x8
            | Kernel::GemmLanes8x16
            | Kernel::GemmTexelsNn
            | Kernel::GemmTexelsTn => 8,
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

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}
