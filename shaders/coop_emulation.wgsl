// Plain-WGSL stand-ins for the cooperative-matrix operations of gemm_coop.wgsl and
// step_coop.wgsl, so that their code runs, slowly, on adapters without matrix units
// (RNN_WGPU_MATRIX_UNITS=emulate; CI's tests on llvmpipe). Both name their arrays of tiles sa,
// sb and sc, and define T, WG_SIZE, K_PARTS and acc_elem. src/gpu/coop_emulation.rs rewrites
// each operation into a call here:
//   coopLoadT<Tile>(&arr[offset], stride)   ->  emu_load_arr(t, slot, offset, stride)
//   acc = coopMultiplyAdd(a, b, acc)        ->  acc = emu_multiply_add(t, a, b, acc)
//   coopStoreT(tile, &arr[offset], stride)  ->  emu_store_arr(t, tile, offset, stride)
// with `slot` numbering the loads of the source (EMU_SLOTS of them, a constant the rewriter
// adds) and `t` the entry point's local_invocation_index.
//
// The semantics stood in for, which the real operations must share for the emulation to
// vouch for the kernel: coopLoadT reads a row-major T x T tile (row r at offset + r * stride)
// and coopStoreT writes one; coopMultiplyAdd is acc + a b with f16 inputs, f32 products and
// sums, rounded to the accumulator's type.
//
// A tile is a slot of T x T values in workgroup memory, which the invocations of an emulated
// subgroup share as a subgroup shares a cooperative matrix. A workgroup of step_coop.wgsl is
// K_PARTS subgroups, runs of WG_SIZE / K_PARTS consecutive invocations as the kernel numbers
// its parts, each with its own EMU_SLOTS slots (gemm_coop.wgsl's K_PARTS is 1). Every
// operation splits its tile's elements over its subgroup's invocations and is fenced by
// barriers on both sides, so it reads what the operations before it wrote. The multiply-add
// writes the accumulator's slot in place: that is what `acc = coopMultiplyAdd(a, b, acc)`
// means, and the rewriter refuses any other form. WGSL cannot pass a pointer to workgroup
// memory, so there is one load per array the kernel reads.

struct EmuTile {
    slot: u32,
}

// Every tile of the kernel, as f32 (an f16 value is exact in f32): part q's slot s at
// (q * EMU_SLOTS + s) * T * T.
var<workgroup> emu_tiles: array<f32, K_PARTS * EMU_SLOTS * T * T>;

// Element e of the T x T tile that starts at `offset` with rows `stride` apart.
fn emu_at(offset: u32, stride: u32, e: u32) -> u32 {
    return offset + (e / T) * stride + e % T;
}

// Invocations per emulated subgroup.
fn emu_lanes() -> u32 {
    return WG_SIZE / K_PARTS;
}

// The first element of `slot` of invocation t's subgroup in emu_tiles.
fn emu_slot(t: u32, slot: u32) -> u32 {
    return ((t / emu_lanes()) * EMU_SLOTS + slot) * T * T;
}

fn emu_load_sa(t: u32, slot: u32, offset: u32, stride: u32) -> EmuTile {
    workgroupBarrier();
    for (var e = t % emu_lanes(); e < T * T; e += emu_lanes()) {
        emu_tiles[emu_slot(t, slot) + e] = f32(sa[emu_at(offset, stride, e)]);
    }
    workgroupBarrier();
    return EmuTile(slot);
}

fn emu_load_sb(t: u32, slot: u32, offset: u32, stride: u32) -> EmuTile {
    workgroupBarrier();
    for (var e = t % emu_lanes(); e < T * T; e += emu_lanes()) {
        emu_tiles[emu_slot(t, slot) + e] = f32(sb[emu_at(offset, stride, e)]);
    }
    workgroupBarrier();
    return EmuTile(slot);
}

fn emu_load_sc(t: u32, slot: u32, offset: u32, stride: u32) -> EmuTile {
    workgroupBarrier();
    for (var e = t % emu_lanes(); e < T * T; e += emu_lanes()) {
        emu_tiles[emu_slot(t, slot) + e] = f32(sc[emu_at(offset, stride, e)]);
    }
    workgroupBarrier();
    return EmuTile(slot);
}

fn emu_store_sc(t: u32, tile: EmuTile, offset: u32, stride: u32) {
    workgroupBarrier();
    for (var e = t % emu_lanes(); e < T * T; e += emu_lanes()) {
        sc[emu_at(offset, stride, e)] = acc_elem(emu_tiles[emu_slot(t, tile.slot) + e]);
    }
    workgroupBarrier();
}

// Four terms at a time: llvmpipe ends an invocation's loops after 65,535 iterations in all, and
// fewer iterations per step let one dispatch sum a K long enough to be split into parts.
fn emu_multiply_add(t: u32, a: EmuTile, b: EmuTile, acc: EmuTile) -> EmuTile {
    workgroupBarrier();
    for (var e = t % emu_lanes(); e < T * T; e += emu_lanes()) {
        let row = emu_slot(t, a.slot) + (e / T) * T;
        let col = emu_slot(t, b.slot) + e % T;
        var sum = emu_tiles[emu_slot(t, acc.slot) + e];
        for (var kk = 0u; kk < T; kk += 4u) {
            let x = vec4(emu_tiles[row + kk], emu_tiles[row + kk + 1u], emu_tiles[row + kk + 2u],
                         emu_tiles[row + kk + 3u]);
            let y = vec4(emu_tiles[col + kk * T], emu_tiles[col + (kk + 1u) * T],
                         emu_tiles[col + (kk + 2u) * T], emu_tiles[col + (kk + 3u) * T]);
            sum += dot(x, y);
        }
        emu_tiles[emu_slot(t, acc.slot) + e] = f32(acc_elem(sum));
    }
    workgroupBarrier();
    return acc;
}
