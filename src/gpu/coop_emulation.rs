//! The shaders on matrix units (gemm_coop.wgsl, step_coop.wgsl) with their cooperative-matrix
//! operations written out in plain WGSL (shaders/coop_emulation.wgsl), for
//! `MatrixUnits::Emulate`: the kernels' own code (staging, edges, transposes, parts of K, bias,
//! accumulation, the tiles' offsets and strides, the step kernels' epilogues) runs on any
//! adapter with f16, so CI checks it on llvmpipe, which has no matrix units. What only the
//! hardware can check is what the emulation assumes of the operations; the WGSL file says what
//! that is.

use super::kernels::{CoopEdge, Elements, Shader};

/// The tiles step_coop.wgsl's emulation keeps per part (its `EMU_SLOTS`: a slot per
/// cooperative load in the file, forward's and backward's), for `CoopStep::storage_bytes`.
pub const STEP_SLOTS: u32 = 12;

/// The emulated source of `shader` (one that is `on_matrix_units`) for `elements` on tiles of
/// `edge`: the prelude without the cooperative-matrix extension, the tiles' prelude and the
/// shader rewritten by `rewrite`, then the stand-ins.
pub fn source_for(shader: Shader, elements: Elements, edge: CoopEdge) -> String {
    let kernel = rewrite(&(edge.prelude() + shader.source()))
        .unwrap_or_else(|why| panic!("{} cannot be emulated: {why}", shader.file_name()));
    elements.prelude("enable f16;\n") + &kernel + include_str!("../../shaders/coop_emulation.wgsl")
}

/// `source` with comments dropped, every cooperative-matrix type made `EmuTile` and every
/// operation a call of its stand-in (coop_emulation.wgsl lists the forms), followed by
/// `EMU_SLOTS`. Err names what it cannot rewrite: an operation in another form, or anything
/// cooperative left over.
pub fn rewrite(source: &str) -> Result<String, String> {
    let code: String = (source.lines())
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    if !code.contains("@builtin(local_invocation_index) t: u32") {
        return Err("the stand-ins need the local invocation index, named t".into());
    }
    let mut out = String::with_capacity(code.len());
    let mut rest = code.as_str();
    let mut slots = 0;
    while let Some(at) = rest.find("coop") {
        out.push_str(&rest[..at]);
        let op = &rest[at..];
        // Only a name that starts with coop (not gemm_coop, the entry point).
        if out.ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            out.push_str("coop");
            rest = &op["coop".len()..];
            continue;
        }
        let StandIn { text, replaced } = stand_in(op, &out, &mut slots)?;
        out.push_str(&text);
        rest = &op[replaced..];
    }
    out.push_str(rest);
    Ok(out + &format!("\nconst EMU_SLOTS: u32 = {slots}u;\n"))
}

/// What replaces the cooperative-matrix type or operation at the start of some source: `text`
/// in place of its first `replaced` bytes.
struct StandIn {
    text: String,
    replaced: usize,
}

/// The stand-in for the type or operation that starts `op`, where `before` is the rewritten
/// source before it; a load takes the next of `slots`.
fn stand_in(op: &str, before: &str, slots: &mut u32) -> Result<StandIn, String> {
    let stand_in = |text: String, replaced| Ok(StandIn { text, replaced });
    if op.starts_with("coop_mat") {
        let end = op.find('>').ok_or("an unclosed cooperative-matrix type")?;
        return stand_in("EmuTile".into(), end + 1);
    }
    if let Some(after) = op.strip_prefix("coopLoadT<") {
        let open = after.find('(').ok_or("coopLoadT without arguments")?;
        let (args, len) = arguments(&after[open..])?;
        let [place, stride] = args.as_slice() else {
            return Err(format!("coopLoadT with {} arguments", args.len()));
        };
        let (array, offset) = element(place)?;
        let text = format!("emu_load_{array}(t, {slots}u, {offset}, {stride})");
        *slots += 1;
        return stand_in(text, "coopLoadT<".len() + open + len);
    }
    if let Some(after) = op.strip_prefix("coopStoreT") {
        let (args, len) = arguments(after)?;
        let [tile, place, stride] = args.as_slice() else {
            return Err(format!("coopStoreT with {} arguments", args.len()));
        };
        let (array, offset) = element(place)?;
        let text = format!("emu_store_{array}(t, {tile}, {offset}, {stride})");
        return stand_in(text, "coopStoreT".len() + len);
    }
    if let Some(after) = op.strip_prefix("coopMultiplyAdd") {
        let (args, len) = arguments(after)?;
        let [a, b, acc] = args.as_slice() else {
            return Err(format!("coopMultiplyAdd with {} arguments", args.len()));
        };
        // The stand-in writes acc's slot in place: only `acc = coopMultiplyAdd(a, b, acc)`.
        let assigned = before.trim_end().strip_suffix('=').map(str::trim_end);
        if !assigned.is_some_and(|target| target.ends_with(acc.as_str())) {
            return Err(format!(
                "coopMultiplyAdd({a}, {b}, {acc}) not assigned to {acc}"
            ));
        }
        let text = format!("emu_multiply_add(t, {a}, {b}, {acc})");
        return stand_in(text, "coopMultiplyAdd".len() + len);
    }
    let word: String = (op.chars())
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    Err(format!("no stand-in for {word}"))
}

/// The arguments of the call whose parenthesis opens `text`, trimmed, split at the commas
/// outside brackets, and the length of the call's text up to its closing parenthesis.
fn arguments(text: &str) -> Result<(Vec<String>, usize), String> {
    if !text.starts_with('(') {
        return Err(format!(
            "expected a call at '{}'",
            text.lines().next().unwrap_or("")
        ));
    }
    let (mut depth, mut args, mut start) = (0, Vec::new(), 1);
    for (i, c) in text.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' if depth == 1 => {
                args.push(text[start..i].trim().to_string());
                start = i + 1;
            }
            _ => {}
        }
        if depth == 0 {
            args.push(text[start..i].trim().to_string());
            return Ok((args, i + 1));
        }
    }
    Err("an unclosed call".into())
}

/// `&array[offset]` as (array, offset).
fn element(place: &str) -> Result<(&str, &str), String> {
    let inner = (place.strip_prefix('&'))
        .and_then(|p| p.strip_suffix(']'))
        .ok_or_else(|| format!("'{place}' is not &array[offset]"))?;
    let (array, offset) = inner
        .split_once('[')
        .ok_or_else(|| format!("'{place}' is not &array[offset]"))?;
    Ok((array.trim(), offset.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KERNEL: &str = "fn k(@builtin(local_invocation_index) t: u32) {
    var acc = coopLoadT<TileC>(&sc[T * BLOCK + T], BLOCK); // coopLoadT in a comment
    let a = coopLoadT<coop_mat16x16<f16, A>>(&sa[f(1, 2)], T);
    acc = coopMultiplyAdd(a, b, acc);
    coopStoreT(acc, &sc[0], BLOCK);
}";

    #[test]
    fn every_operation_becomes_its_stand_in() {
        let out = rewrite(KERNEL).unwrap();
        assert!(
            out.contains("var acc = emu_load_sc(t, 0u, T * BLOCK + T, BLOCK);"),
            "{out}"
        );
        assert!(
            out.contains("let a = emu_load_sa(t, 1u, f(1, 2), T);"),
            "{out}"
        );
        assert!(
            out.contains("acc = emu_multiply_add(t, a, b, acc);"),
            "{out}"
        );
        assert!(out.contains("emu_store_sc(t, acc, 0, BLOCK);"), "{out}");
        assert!(out.contains("const EMU_SLOTS: u32 = 2u;"), "{out}");
        assert!(!out.contains("coop"), "{out}");
        let named = "fn gemm_coop() { let x = coopLoadT<TileA>(&sa[0], T); }";
        let named = named.replace("()", "(@builtin(local_invocation_index) t: u32)");
        let out = rewrite(&named).unwrap();
        assert!(out.contains("fn gemm_coop(") && out.contains("emu_load_sa(t, 0u, 0, T)"));
    }

    #[test]
    fn forms_without_a_faithful_stand_in_are_refused() {
        let refused = [
            KERNEL.replace(
                "acc = coopMultiplyAdd(a, b, acc)",
                "let d = coopMultiplyAdd(a, b, acc)",
            ),
            KERNEL.replace("&sc[0]", "p"),
            KERNEL.replace("coopStoreT", "coopStore"),
            KERNEL.replace("t: u32", "index: u32"),
        ];
        for source in refused {
            assert!(rewrite(&source).is_err(), "{source}");
        }
    }

    #[test]
    fn the_kernels_themselves_are_rewritten_whole() {
        let out = rewrite(Shader::GemmCoop.source()).unwrap();
        assert!(!out.replace("gemm_coop", "").contains("coop"), "{out}");
        assert!(out.contains("const EMU_SLOTS: u32 = 8u;"), "{out}");
        // forward: 4 accumulators, A and 4 gates' B; backward: 1 accumulator, A and B
        for shader in [Shader::RnnCoop, Shader::LstmCoop, Shader::GruCoop] {
            let out = rewrite(shader.source()).unwrap();
            assert!(!out.replace("_coop", "").contains("coop"), "{out}");
            let slots = format!("const EMU_SLOTS: u32 = {STEP_SLOTS}u;");
            assert!(out.contains(&slots), "{out}");
        }
    }
}
