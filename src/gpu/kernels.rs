//! Every WGSL file and entry point of the crate, named by enums rather than strings, with the
//! bind-group layout each kernel expects and the element types its storage buffers are
//! compiled for. Pipelines are compiled on first use and cached in the `Gpu` context.

use crate::precision::Precision;

// The kernels' sizes that the memory plan (crate::internals::plan) reads too: here rather than
// in the recorder and the pass, which use the plan, so that the plan uses nothing that uses it.

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
    /// `a_elem`: gemm.wgsl's A (binding 0), reduce.wgsl's `x`, stack.wgsl's `src0` and `src1`,
    /// and `stored` in the cell shaders (their gates, states, gradients and `weight_hh`).
    pub a: Precision,
    /// `b_elem`: gemm.wgsl's B (binding 1); no other shader reads it.
    pub b: Precision,
    /// `c_elem`: gemm.wgsl's C (binding 3, summed in f32 and rounded once on the store) and
    /// stack.wgsl's `dst`.
    pub c: Precision,
}

impl Elements {
    /// Every buffer f32: the default, and the only choice for shaders without aliases.
    pub const F32: Elements = Elements::all(Precision::F32);

    /// `a`, `b` and `c` all of `precision`: how the engine compiles the cell, reduction and
    /// stack kernels under `--precision`.
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

    /// The WGSL put in front of a shader's source: `enable f16;` where one of the three is f16
    /// and `enables` does not already say it, then `enables`, then the `a_elem`, `b_elem`,
    /// `c_elem` and `stored` aliases.
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

/// The edge of the square tiles the shaders on matrix units multiply (gemm_coop.wgsl,
/// step_coop.wgsl): cooperative matrices of f16 x f16 -> f32, 16 x 16 x 16 where NVIDIA's and
/// AMD's Vulkan drivers list them, 8 x 8 x 8 where Apple's simdgroup matrices (Metal) and
/// llvmpipe (Mesa 26.1 and 26.2) do. (The engine also needs a fixed subgroup size, which wgpu
/// gives for NVIDIA and llvmpipe only: `Device::matrix_units`.) The edge is part of the tiles'
/// WGSL type names (`coop_mat16x16`), so it is put in front of the source rather than set as
/// an `override`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CoopEdge {
    /// 8 x 8 tiles.
    Eight,
    /// 16 x 16 tiles.
    Sixteen,
}

impl CoopEdge {
    /// Every edge the kernels are written for, in the order the engine takes them where an
    /// adapter lists several: 16 first, a quarter of the operations (and of the staging
    /// barriers between them) per product.
    pub const PREFERRED: [CoopEdge; 2] = [CoopEdge::Sixteen, CoopEdge::Eight];

    /// Elements along the edge (`T` in both shaders).
    pub const fn size(self) -> u32 {
        match self {
            CoopEdge::Eight => 8,
            CoopEdge::Sixteen => 16,
        }
    }

    /// The WGSL that sizes the shaders on matrix units: `T` and the aliases of the f16 operand
    /// tiles and of the accumulator tile (of the shader's own `acc_elem`).
    pub fn prelude(self) -> String {
        let (t, mat) = (self.size(), format!("coop_mat{0}x{0}", self.size()));
        format!(
            "const T: u32 = {t}u;\nalias TileA = {mat}<f16, A>;\nalias TileB = {mat}<f16, B>;\n\
             alias TileC = {mat}<acc_elem, C>;\n"
        )
    }
}

impl std::fmt::Display for CoopEdge {
    /// `16x16x16`, as the adapters' shapes are written.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.size();
        write!(f, "{t}x{t}x{t}")
    }
}

/// A WGSL module the engine compiles: one file of `shaders/` with the files it builds on put
/// in front (`source` lists them), compiled once per `Elements`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shader {
    /// gemm.wgsl after gemm_layout.wgsl: the tiled matrix products `gemm_4x4` and `gemm_8x8`,
    /// and `gemm_split_sum`.
    Gemm,
    /// gemm_coop.wgsl after gemm_layout.wgsl: `gemm_coop`, the matrix products on square
    /// cooperative matrices (wgpu's experimental extension) of a `CoopEdge`.
    GemmCoop,
    /// rnn.wgsl, the vanilla RNN's step, after finite.wgsl and step.wgsl and before fused.wgsl
    /// and persistent.wgsl: its fused and persistent forward and backward kernels.
    Rnn,
    /// lstm.wgsl, the LSTM's step, with the same files around it as `Rnn`.
    Lstm,
    /// gru.wgsl, the GRU's step, with the same files around it as `Rnn`.
    Gru,
    /// rnn.wgsl after finite.wgsl and step.wgsl, then step_coop.wgsl: the vanilla RNN's
    /// fused steps with the recurrent product on square cooperative matrices of a `CoopEdge`.
    RnnCoop,
    /// lstm.wgsl with the same files around it as `RnnCoop`.
    LstmCoop,
    /// gru.wgsl with the same files around it as `RnnCoop`.
    GruCoop,
    /// loss.wgsl (after finite.wgsl): the MSE and cross-entropy losses with their gradients.
    Loss,
    /// reduce.wgsl (after finite.wgsl): the deterministic row norms, row sums and column sums.
    Reduce,
    /// optim.wgsl (after finite.wgsl): the global gradient norm and the SGD, Adam(W) and
    /// RMSprop updates.
    Optim,
    /// stack.wgsl: what stacked and bidirectional models add around the cells (time reversal,
    /// joining two directions with dropout, splitting the gradient), and element-type copies.
    Stack,
}

impl Shader {
    /// Every shader, each once.
    pub const ALL: [Shader; 12] = [
        Shader::Gemm,
        Shader::GemmCoop,
        Shader::Rnn,
        Shader::Lstm,
        Shader::Gru,
        Shader::RnnCoop,
        Shader::LstmCoop,
        Shader::GruCoop,
        Shader::Loss,
        Shader::Reduce,
        Shader::Optim,
        Shader::Stack,
    ];

    /// The name in `shaders/` of the file that makes the shader what it is (the others that
    /// `source` joins are shared), for messages.
    pub fn file_name(self) -> &'static str {
        match self {
            Shader::Gemm => "gemm.wgsl",
            Shader::GemmCoop => "gemm_coop.wgsl",
            Shader::Rnn => "rnn.wgsl",
            Shader::Lstm => "lstm.wgsl",
            Shader::Gru => "gru.wgsl",
            Shader::RnnCoop => "rnn.wgsl + step_coop.wgsl",
            Shader::LstmCoop => "lstm.wgsl + step_coop.wgsl",
            Shader::GruCoop => "gru.wgsl + step_coop.wgsl",
            Shader::Loss => "loss.wgsl",
            Shader::Reduce => "reduce.wgsl",
            Shader::Optim => "optim.wgsl",
            Shader::Stack => "stack.wgsl",
        }
    }

    /// The source of a shader not `on_matrix_units` as compiled for `elements`: the aliases'
    /// prelude, then the file(s).
    pub fn source_for(self, elements: Elements) -> String {
        assert!(
            !self.on_matrix_units(),
            "{} needs a CoopEdge",
            self.file_name()
        );
        elements.prelude(self.enables()) + self.source()
    }

    /// The source of a shader `on_matrix_units` as compiled for `elements` on tiles of `edge`:
    /// the aliases' prelude, the tiles' (`CoopEdge::prelude`), then the files.
    pub fn coop_source_for(self, elements: Elements, edge: CoopEdge) -> String {
        assert!(self.on_matrix_units(), "{} has no tiles", self.file_name());
        elements.prelude(self.enables()) + &edge.prelude() + self.source()
    }

    /// Whether the shader multiplies on cooperative matrices (wgpu's experimental extension):
    /// it needs the matrix units, or their emulation (`coop_emulation`).
    pub fn on_matrix_units(self) -> bool {
        matches!(
            self,
            Shader::GemmCoop | Shader::RnnCoop | Shader::LstmCoop | Shader::GruCoop
        )
    }

    /// The `enable` directives the shader needs beyond f16's.
    pub fn enables(self) -> &'static str {
        match self.on_matrix_units() {
            // their tiles are f16 whatever the buffers hold
            true => "enable f16;\nenable wgpu_cooperative_matrix;\n",
            false => "",
        }
    }

    /// The shader's own text (without the prelude that `source_for` puts in front).
    pub fn source(self) -> &'static str {
        // A cell's step file between the shared ones and the kernels built on it.
        macro_rules! cell {
            ($cell:literal, $($kernels:literal),+) => {
                concat!(
                    include_str!("../../shaders/finite.wgsl"),
                    include_str!("../../shaders/step.wgsl"),
                    include_str!(concat!("../../shaders/", $cell)),
                    $(include_str!(concat!("../../shaders/", $kernels))),+
                )
            };
        }
        match self {
            Shader::Gemm => concat!(
                include_str!("../../shaders/gemm_layout.wgsl"),
                include_str!("../../shaders/gemm.wgsl")
            ),
            Shader::GemmCoop => concat!(
                include_str!("../../shaders/gemm_layout.wgsl"),
                include_str!("../../shaders/gemm_coop.wgsl")
            ),
            Shader::Rnn => cell!("rnn.wgsl", "fused.wgsl", "persistent.wgsl"),
            Shader::Lstm => cell!("lstm.wgsl", "fused.wgsl", "persistent.wgsl"),
            Shader::Gru => cell!("gru.wgsl", "fused.wgsl", "persistent.wgsl"),
            Shader::RnnCoop => cell!("rnn.wgsl", "step_coop.wgsl"),
            Shader::LstmCoop => cell!("lstm.wgsl", "step_coop.wgsl"),
            Shader::GruCoop => cell!("gru.wgsl", "step_coop.wgsl"),
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

/// A compute entry point: which function of which `Shader` (`entry_point`, `shader`), with
/// which bindings (`layout`). Its CPU twin in `cpu::` has the same name where one exists.
///
/// Buffers are time-major and hold one segment of `T` steps of a batch of `B` sequences; `H` is
/// the hidden size, `G` the cell's gate blocks (RNN 1, LSTM 4, GRU 3), `O` the output size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// `gemm_4x4` (gemm.wgsl): `C[M, N] (+)= op(A) op(B) (+ bias)`, a 4x4 block of C per
    /// invocation; tile, K-slice and K-split set per pipeline (`GemmTile` with `block` 4).
    Gemm4x4,
    /// `gemm_8x8` (gemm.wgsl): the same product with an 8x8 block of C per invocation
    /// (`GemmTile` with `block` 8), twice the FMAs per load from workgroup memory.
    Gemm8x8,
    /// `gemm_split_sum` (gemm.wgsl): adds the partial products of a product whose K was split
    /// over parts of workgroups, in part order, then the bias, then the old C; one invocation
    /// per element of C.
    GemmSplitSum,
    /// `gemm_coop` (gemm_coop.wgsl): a block of 2 x 2 tiles of C per workgroup of one
    /// subgroup on square cooperative matrices (`CoopEdge`), f16 A and B, f32 accumulation; the
    /// workgroup is the subgroup size (`PipelineShape::Coop`).
    GemmCoop,
    /// `step_forward` (fused.wgsl around rnn.wgsl), one time step `t` over a tile of (batch
    /// rows, units): adds `h_{t-1} W_hh^T` to the pre-activations in `gates[t]` (`[B, H]`),
    /// then writes `h_t = act(pre + b_hh)` into `hs[t]`; padding steps copy `h_{t-1}`. The
    /// workgroup shape is set per pipeline (`StepTile`).
    RnnForward,
    /// `step_backward` (fused.wgsl around rnn.wgsl), one step `t` back: adds
    /// `dgates[t+1] W_hh` into `h_carry`, stores the total `dE/dh_t` in `dh[t]` and writes
    /// `dE/dpre_t` into `dgates[t]` (0 on padding steps, whose gradient passes on unchanged).
    RnnBackward,
    /// `step_forward` (fused.wgsl around lstm.wgsl): adds `h_{t-1} W_hh^T` to
    /// `gates[t]` (`[B, 4H]`), then overwrites them with the activated gates i, f, g, o and
    /// writes `c_t` into `cs[t]` and `h_t` into `hs[t]`.
    LstmForward,
    /// `step_backward` (fused.wgsl around lstm.wgsl): the total `dE/dh_t` into `dh[t]`, the
    /// total `dE/dc_t` into `dc[t]`, the gates' gradient into `dgates[t]` (`[B, 4H]`), and
    /// `dE/dc_t * f` left in `dc_carry` for step `t-1` (`dE/dc_0` after step 1).
    LstmBackward,
    /// `step_forward` (fused.wgsl around gru.wgsl): writes `h_{t-1} W_hh^T` into `hh[t]`
    /// (`[B, 3H]`, binding 2, apart from the input term because the reset gate scales one
    /// block of it), then the activated r, z, n into `gates[t]` and `h_t` into `hs[t]`.
    GruForward,
    /// `step_backward` (fused.wgsl around gru.wgsl): the total `dE/dh_t` into `dh[t]`,
    /// `dE/d(x W_ih^T)` into `dgates[t]` and `dE/d(h W_hh^T)` into `dhh[t]` (binding 6), and
    /// the direct path `z * dE/dh_t` left in `h_carry` for step `t-1`.
    GruBackward,
    /// `step_forward_coop` (step_coop.wgsl after rnn.wgsl): `RnnForward` with the recurrent
    /// product of a tile of batch rows x units on square cooperative matrices (`CoopEdge`), one
    /// subgroup per workgroup (`PipelineShape::Coop`); f16 operands, f32 sums.
    RnnForwardCoop,
    /// `step_backward_coop` (step_coop.wgsl after rnn.wgsl): `RnnBackward` likewise.
    RnnBackwardCoop,
    /// `step_forward_coop` (step_coop.wgsl after lstm.wgsl): `LstmForward` likewise.
    LstmForwardCoop,
    /// `step_backward_coop` (step_coop.wgsl after lstm.wgsl): `LstmBackward` likewise.
    LstmBackwardCoop,
    /// `step_forward_coop` (step_coop.wgsl after gru.wgsl): `GruForward` likewise.
    GruForwardCoop,
    /// `step_backward_coop` (step_coop.wgsl after gru.wgsl): `GruBackward` likewise.
    GruBackwardCoop,
    /// `persistent_forward` (persistent.wgsl around rnn.wgsl): `RnnForward` for the steps
    /// `run_start + 1 ..= run_end` of a segment in a workgroup of 256 per slice of the batch,
    /// `W_hh` kept in workgroup memory; for models whose steps are too small to fill the GPU.
    RnnForwardPersistent,
    /// `persistent_backward` (persistent.wgsl around rnn.wgsl): `RnnBackward` for the steps
    /// `run_end` down to `run_start + 1` likewise.
    RnnBackwardPersistent,
    /// `persistent_forward` (persistent.wgsl around lstm.wgsl): `LstmForward` for a run of
    /// steps, a workgroup per slice of the batch.
    LstmForwardPersistent,
    /// `persistent_backward` (persistent.wgsl around lstm.wgsl): `LstmBackward` for a run of
    /// steps, last to first, a workgroup per slice of the batch.
    LstmBackwardPersistent,
    /// `persistent_forward` (persistent.wgsl around gru.wgsl): `GruForward` for a run of
    /// steps, a workgroup per slice of the batch.
    GruForwardPersistent,
    /// `persistent_backward` (persistent.wgsl around gru.wgsl): `GruBackward` for a run of
    /// steps, last to first, a workgroup per slice of the batch.
    GruBackwardPersistent,
    /// `mse_loss` (loss.wgsl), one invocation per scored row: the row's share of
    /// `nn.MSELoss(reduction='mean')` into `row_loss` (`[rows]`) and its gradient with respect
    /// to the outputs, times the loss scale, into `doutputs` (`[rows, O]`); padding rows 0.
    MseLoss,
    /// `cross_entropy_loss` (loss.wgsl): as `MseLoss` for `nn.CrossEntropyLoss` on logits
    /// `[rows, O]` and class indices `[rows]`.
    CrossEntropyLoss,
    /// `row_norms` (reduce.wgsl), one workgroup of 256 per row: `out[r] = sqrt(sum_i x[r, i]^2)`,
    /// the per-step gradient norms `||dE/dh_t||` over each step's `[B, H]`.
    RowNorms,
    /// `row_sums` (reduce.wgsl), one workgroup of 256 per row: `out[r] = sum_i x[r, i]`, the
    /// loss from its per-row shares.
    RowSums,
    /// `column_sums` (reduce.wgsl), one invocation per column: `out[j] (+)= sum_r x[r, j]`
    /// down the rows in order; the bias gradients, or the second pass over `ColumnBlockSums`.
    ColumnSums,
    /// `column_block_sums` (reduce.wgsl): each column's sum over each block of 256 rows, the
    /// first pass of a column sum over many rows (`column_blocks`).
    ColumnBlockSums,
    /// `grad_sum_squares` (optim.wgsl), one workgroup of 256 per chunk of 4,096 elements of a
    /// gradient tensor: the chunk's sum of squares into `reduction`.
    GradSumSquares,
    /// `grad_norm` (optim.wgsl), one workgroup: the global pre-clip gradient norm, the square
    /// root of every tensor's chunk sums added in order, into `reduction[0]`.
    GradNorm,
    /// `sgd_step` (optim.wgsl), one invocation per element: `torch.optim.SGD`'s update (weight
    /// decay, momentum) with the clip factor and 1 / the loss scale applied to the gradient;
    /// nothing changes when the global norm is not finite.
    SgdStep,
    /// `adam_step` (optim.wgsl): `torch.optim.Adam`'s update, AdamW's through the decoupled
    /// decay; clipping and skipping as `SgdStep`.
    AdamStep,
    /// `rmsprop_step` (optim.wgsl): `torch.optim.RMSprop`'s update (with momentum where set);
    /// clipping and skipping as `SgdStep`.
    RmspropStep,
    /// `reverse_steps` (stack.wgsl): `dst[s, b] (+)= src0[L_b - 1 - s, b]` inside each
    /// sequence's length `L_b`, `s` itself on padding: a reverse cell's input in its own order,
    /// and (being its own inverse) a gradient mapped back.
    ReverseSteps,
    /// `join_forward` (stack.wgsl): a layer's output `[T, B, D*H]` in natural time, the
    /// forward cell's `hs` then the reverse cell's, times dropout's factor (0 or `1/(1-p)`)
    /// as the next layer's input.
    JoinForward,
    /// `join_backward` (stack.wgsl): one direction's share of the gradient of the joined
    /// output, back in that cell's own step order as `dE/dh` `[T, B, H]` (dropout applied).
    JoinBackward,
    /// `copy_elements` (stack.wgsl): `dst[dst_offset + i] = src0[src_offset + i]` converted
    /// to dst's element type, e.g. f32 master weights into their f16 working copy.
    CopyElements,
}

/// How a kernel's bindings are laid out: `group(0)`, storage buffers and one uniform holding
/// the per-dispatch parameters at a dynamic offset. Each variant lists its bindings in
/// `@binding` order, as `slots` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Layout {
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
pub(crate) enum Slot {
    /// A `var<storage, read>` buffer.
    Read,
    /// A `var<storage, read_write>` buffer.
    ReadWrite,
    /// The `var<uniform>` parameter struct, bound at a dynamic offset into the recorder's
    /// arena (`PARAMS_BINDING_SIZE` bytes).
    Params,
}

impl Layout {
    /// Every layout, in `index` order (the pipeline layouts are made in this order).
    pub const ALL: [Layout; 6] = [
        Layout::Gemm,
        Layout::Step,
        Layout::Loss,
        Layout::Reduce,
        Layout::Optim,
        Layout::Stack,
    ];

    /// The kind of each binding, `@binding(0)` first.
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
    /// Every kernel, each once: `tests/shaders.rs` checks that these are exactly the shaders'
    /// entry points.
    pub const ALL: [Kernel; 37] = [
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
        Kernel::RnnForwardCoop,
        Kernel::RnnBackwardCoop,
        Kernel::LstmForwardCoop,
        Kernel::LstmBackwardCoop,
        Kernel::GruForwardCoop,
        Kernel::GruBackwardCoop,
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

    /// The name of the WGSL function the pipeline runs (the three cells share theirs: each
    /// cell is its own `Shader`).
    pub fn entry_point(self) -> &'static str {
        match self {
            Kernel::Gemm4x4 => "gemm_4x4",
            Kernel::Gemm8x8 => "gemm_8x8",
            Kernel::GemmSplitSum => "gemm_split_sum",
            Kernel::GemmCoop => "gemm_coop",
            Kernel::RnnForward | Kernel::LstmForward | Kernel::GruForward => "step_forward",
            Kernel::RnnBackward | Kernel::LstmBackward | Kernel::GruBackward => "step_backward",
            Kernel::RnnForwardCoop | Kernel::LstmForwardCoop | Kernel::GruForwardCoop => {
                "step_forward_coop"
            }
            Kernel::RnnBackwardCoop | Kernel::LstmBackwardCoop | Kernel::GruBackwardCoop => {
                "step_backward_coop"
            }
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

    /// The shader module whose `entry_point` this is.
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
            Kernel::RnnForwardCoop | Kernel::RnnBackwardCoop => Shader::RnnCoop,
            Kernel::LstmForwardCoop | Kernel::LstmBackwardCoop => Shader::LstmCoop,
            Kernel::GruForwardCoop | Kernel::GruBackwardCoop => Shader::GruCoop,
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

    /// The bindings the kernel expects, one layout per shader.
    pub(crate) fn layout(self) -> Layout {
        match self.shader() {
            Shader::Gemm | Shader::GemmCoop => Layout::Gemm,
            Shader::Rnn | Shader::Lstm | Shader::Gru => Layout::Step,
            Shader::RnnCoop | Shader::LstmCoop | Shader::GruCoop => Layout::Step,
            Shader::Loss => Layout::Loss,
            Shader::Reduce => Layout::Reduce,
            Shader::Optim => Layout::Optim,
            Shader::Stack => Layout::Stack,
        }
    }

    /// Whether the kernel's workgroup shape is set per pipeline, by WGSL `override` constants
    /// (`StepTile` for the fused steps, `GemmTile` for the products, the subgroup size for the
    /// kernels on matrix units), rather than written in its source.
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
                | Kernel::RnnForwardCoop
                | Kernel::RnnBackwardCoop
                | Kernel::LstmForwardCoop
                | Kernel::LstmBackwardCoop
                | Kernel::GruForwardCoop
                | Kernel::GruBackwardCoop
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
