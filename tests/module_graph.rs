//! No import circles among the modules of `src/`: a module that uses another, which uses it
//! back (directly or through others), cannot be read, changed or tested apart from it.
//!
//! Reads the sources of both crates (the library from src/lib.rs; the binary from src/main.rs
//! with src/cli, whose `rnn_wgpu::` paths lead outside it), finds each file module through its
//! `mod x;` declaration, and draws an edge A -> B where A's code names B: a `use` declaration
//! (nested braces, `self` and `as` expanded) or a path that starts with `crate::`, `super::`,
//! `self::`, a child module's name or a module a `use` brought in by name. A path stands for the
//! longest prefix of it that is a module (`crate::cpu::lstm::lstm_forward` is `cpu::lstm`,
//! `crate::Float` the crate root). Comments, string literals and `#[cfg(test)]` items do not
//! count, nor do `mod x;` declarations (a module owns its children; it uses one only where its
//! code names it, as `pub use child::X` does). Every strongly connected component of more than
//! one module is a failure, printed with each of its edges and the lines that make them. So is
//! a library module that names anything through the crate root, which re-exports from many
//! modules: such imports are how circles through the root start.
//!
//! `MODULE_GRAPH_SRC=<dir>` checks another source tree (a `src/` of another commit).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------------
// Lexing: the code without comments and literals, as tokens with their line numbers.

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    /// An identifier or keyword; `$crate` keeps its `$`.
    Ident(String),
    /// `::`
    PathSep,
    /// Any other character outside literals (numbers included, one character at a time).
    Punct(char),
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    line: usize,
}

impl Token {
    fn is(&self, c: char) -> bool {
        self.tok == Tok::Punct(c)
    }

    fn ident(&self) -> Option<&str> {
        match &self.tok {
            Tok::Ident(name) => Some(name),
            _ => None,
        }
    }
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// `source` with every comment and string or character literal replaced by spaces (newlines
/// kept, so that lines still count), so that neither can be taken for code.
fn blank_comments_and_literals(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        match comment_or_literal_end(&chars, i) {
            Some(end) => {
                let end = end.min(chars.len());
                out.extend(
                    chars[i..end]
                        .iter()
                        .map(|&c| if c == '\n' { c } else { ' ' }),
                );
                i = end;
            }
            None => {
                out.push(chars[i]);
                i += 1;
            }
        }
    }
    out
}

/// Where the comment or literal that starts at `i` ends (exclusive); `None` where none starts.
fn comment_or_literal_end(chars: &[char], i: usize) -> Option<usize> {
    let at = |k: usize| chars.get(k).copied().unwrap_or('\0');
    let starts_word = i == 0 || !is_ident_char(at(i - 1));
    match at(i) {
        '/' if at(i + 1) == '/' => Some(find_from(chars, i, '\n').unwrap_or(chars.len())),
        '/' if at(i + 1) == '*' => Some(block_comment_end(chars, i)),
        '"' => Some(string_end(chars, i + 1)),
        '\'' => char_literal_end(chars, i),
        'b' if starts_word && at(i + 1) == '\'' => char_literal_end(chars, i + 1),
        'b' if starts_word && at(i + 1) == 'r' => raw_string_end(chars, i + 2),
        'r' if starts_word => raw_string_end(chars, i + 1),
        _ => None,
    }
}

fn find_from(chars: &[char], from: usize, c: char) -> Option<usize> {
    chars[from..].iter().position(|&x| x == c).map(|k| from + k)
}

/// The end of the (nested) block comment that opens at `i`.
fn block_comment_end(chars: &[char], i: usize) -> usize {
    let (mut depth, mut k) = (0, i);
    while k + 1 < chars.len() {
        match (chars[k], chars[k + 1]) {
            ('/', '*') => depth += 1,
            ('*', '/') => depth -= 1,
            _ => {
                k += 1;
                continue;
            }
        }
        k += 2;
        if depth == 0 {
            return k;
        }
    }
    chars.len()
}

/// The end of a string whose text starts at `from` (after its opening quote).
fn string_end(chars: &[char], from: usize) -> usize {
    let mut k = from;
    while k < chars.len() {
        match chars[k] {
            '\\' => k += 2,
            '"' => return k + 1,
            _ => k += 1,
        }
    }
    chars.len()
}

/// A raw string `r#"..."#` whose `#`s (if any) start at `from`; `None` where `r` begins a name.
fn raw_string_end(chars: &[char], from: usize) -> Option<usize> {
    let hashes = chars[from..].iter().take_while(|&&c| c == '#').count();
    if chars.get(from + hashes) != Some(&'"') {
        return None;
    }
    let closing: Vec<char> = std::iter::once('"')
        .chain("#".repeat(hashes).chars())
        .collect();
    let text = from + hashes + 1;
    let end = (text..chars.len()).find(|&k| chars[k..].starts_with(&closing));
    Some(end.map_or(chars.len(), |k| k + closing.len()))
}

/// A character literal that opens at `i` (`'a'`, `'\n'`, `'\u{41}'`); `None` for a lifetime.
fn char_literal_end(chars: &[char], i: usize) -> Option<usize> {
    match chars.get(i + 1) {
        Some('\\') => find_from(chars, i + 3, '\'').map(|k| k + 1),
        Some(_) if chars.get(i + 2) == Some(&'\'') => Some(i + 3),
        _ => None,
    }
}

/// The tokens of code without comments and literals.
fn tokenize(code: &str) -> Vec<Token> {
    let chars: Vec<char> = code.chars().collect();
    let mut tokens = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < chars.len() {
        let c = chars[i];
        let name_from = if c == '$' { i + 1 } else { i };
        if chars
            .get(name_from)
            .is_some_and(|&n| n.is_alphabetic() || n == '_')
        {
            let end = (name_from..chars.len())
                .find(|&k| !is_ident_char(chars[k]))
                .unwrap_or(chars.len());
            let name = chars[i..end].iter().collect();
            tokens.push(Token {
                tok: Tok::Ident(name),
                line,
            });
            i = end;
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push(Token {
                tok: Tok::PathSep,
                line,
            });
            i += 2;
        } else {
            if c == '\n' {
                line += 1;
            } else if !c.is_whitespace() {
                tokens.push(Token {
                    tok: Tok::Punct(c),
                    line,
                });
            }
            i += 1;
        }
    }
    tokens
}

/// `tokens` without the items that `#[cfg(test)]` marks (test modules, test-only imports).
fn without_test_items(tokens: Vec<Token>) -> Vec<Token> {
    let mut kept = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        if is_cfg_test(&tokens[i..]) {
            i = item_end(&tokens, i);
        } else {
            kept.push(tokens[i].clone());
            i += 1;
        }
    }
    kept
}

fn is_cfg_test(tokens: &[Token]) -> bool {
    let attribute = ["#", "[", "cfg", "(", "test", ")", "]"];
    tokens.len() >= attribute.len()
        && attribute
            .iter()
            .zip(tokens)
            .all(|(want, token)| match &token.tok {
                Tok::Ident(name) => name == want,
                Tok::Punct(c) => want.starts_with(*c),
                Tok::PathSep => false,
            })
}

/// Where the item whose attributes start at `start` ends: after its `;` or its closing brace.
fn item_end(tokens: &[Token], start: usize) -> usize {
    let mut i = start;
    // its attributes, this one included
    while i < tokens.len() && tokens[i].is('#') {
        i = group_end(tokens, i + 1);
    }
    let mut depth = 0usize;
    while i < tokens.len() {
        let token = &tokens[i];
        i += 1;
        if token.is('(') || token.is('[') || token.is('{') {
            depth += 1;
        } else if token.is(')') || token.is(']') || token.is('}') {
            depth = depth.saturating_sub(1);
            if depth == 0 && token.is('}') {
                return i;
            }
        } else if depth == 0 && token.is(';') {
            return i;
        }
    }
    i
}

/// The index after the bracketed group that opens at `open`.
fn group_end(tokens: &[Token], open: usize) -> usize {
    let mut depth = 0usize;
    for (i, token) in tokens.iter().enumerate().skip(open) {
        if token.is('(') || token.is('[') || token.is('{') {
            depth += 1;
        } else if token.is(')') || token.is(']') || token.is('}') {
            depth -= 1;
            if depth == 0 {
                return i + 1;
            }
        }
    }
    tokens.len()
}

// ---------------------------------------------------------------------------------------------
// Modules: the file modules of one crate, found through their `mod x;` declarations.

/// A module's path inside its crate; empty for the crate root.
type ModPath = Vec<String>;

fn display(module: &[String]) -> String {
    if module.is_empty() {
        "crate".to_string()
    } else {
        module.join("::")
    }
}

struct Module {
    file: PathBuf,
    tokens: Vec<Token>,
}

struct Crate {
    modules: BTreeMap<ModPath, Module>,
}

/// Reads a file; `None` where there is none. The disk, or a tree in memory for the tests of
/// the checker itself.
type Read<'a> = &'a dyn Fn(&Path) -> Option<String>;

fn load_crate(root_file: &Path, read: Read) -> Crate {
    let mut modules = BTreeMap::new();
    load_module(Vec::new(), root_file.to_path_buf(), read, &mut modules);
    Crate { modules }
}

fn load_module(path: ModPath, file: PathBuf, read: Read, modules: &mut BTreeMap<ModPath, Module>) {
    let source = read(&file).unwrap_or_else(|| panic!("cannot read {}", file.display()));
    let tokens = without_test_items(tokenize(&blank_comments_and_literals(&source)));
    let placed = path_attributes(&source);
    for (child, line) in declared_children(&tokens) {
        // `#[path = "x"]` names the file relative to the declaring file's folder.
        let at = |relative: &String| file.parent().map(|folder| folder.join(relative));
        let child_file = (placed.get(&child).and_then(at))
            .or_else(|| child_file(&file, &child, read))
            .unwrap_or_else(|| panic!("{}:{line}: no file for `mod {child};`", file.display()));
        let mut child_path = path.clone();
        child_path.push(child);
        load_module(child_path, child_file, read, modules);
    }
    modules.insert(path, Module { file, tokens });
}

/// The modules a file places with `#[path = "file"]` (as the attribute's string is written; the
/// tokens have lost it), by name: the `mod` declaration that follows each attribute.
fn path_attributes(source: &str) -> BTreeMap<String, String> {
    let mut placed = BTreeMap::new();
    for (at, _) in source.match_indices("#[path") {
        let rest = &source[at..];
        let file = rest.split('"').nth(1);
        let name = (rest.split_once(']').map(|(_, after)| after))
            .and_then(|after| after.split_once("mod "))
            .and_then(|(_, decl)| decl.split(';').next());
        if let (Some(file), Some(name)) = (file, name) {
            placed.insert(name.trim().to_string(), file.to_string());
        }
    }
    placed
}

/// The `mod x;` declarations of a file (inline `mod x { ... }` modules are part of the file).
fn declared_children(tokens: &[Token]) -> Vec<(String, usize)> {
    tokens
        .windows(3)
        .filter(|w| w[0].ident() == Some("mod") && w[2].is(';'))
        .filter_map(|w| Some((w[1].ident()?.to_string(), w[1].line)))
        .collect()
}

/// `x.rs` or `x/mod.rs` in the folder that holds `parent_file`'s children.
fn child_file(parent_file: &Path, child: &str, read: Read) -> Option<PathBuf> {
    let owns_folder = ["mod.rs", "lib.rs", "main.rs"]
        .iter()
        .any(|name| parent_file.file_name() == Some(name.as_ref()));
    let folder = if owns_folder {
        parent_file.parent()?.to_path_buf()
    } else {
        parent_file.with_extension("")
    };
    [
        folder.join(format!("{child}.rs")),
        folder.join(child).join("mod.rs"),
    ]
    .into_iter()
    .find(|candidate| read(candidate).is_some())
}

// ---------------------------------------------------------------------------------------------
// Paths: what a module's code names, from `use` declarations and from paths in its code.

/// One path that code names, as written.
struct NamedPath {
    segments: Vec<String>,
    line: usize,
    /// The inline modules (`mod x { ... }`) it sits in, inside its file.
    scope: Vec<String>,
    /// The name a `use` binds it to (`use a::b as c` binds `c`), if any.
    binds: Option<String>,
}

/// The paths of a file's `use` declarations, and the token ranges those declarations take.
fn use_paths(tokens: &[Token], scopes: &[Vec<String>]) -> (Vec<NamedPath>, Vec<(usize, usize)>) {
    let (mut paths, mut ranges) = (Vec::new(), Vec::new());
    for start in 0..tokens.len() {
        if tokens[start].ident() != Some("use") {
            continue;
        }
        let mut i = start + 1;
        let mut leaves = Vec::new();
        use_tree(tokens, &mut i, Vec::new(), &mut leaves);
        while i < tokens.len() && !tokens[i].is(';') {
            i += 1;
        }
        ranges.push((start, i));
        paths.extend(leaves.into_iter().map(|mut leaf| {
            leaf.scope = scopes[start].clone();
            leaf
        }));
    }
    (paths, ranges)
}

/// Expands the use tree at `*i` (`a::{self, b::c as d, e::*}`) below `prefix` into `out`.
fn use_tree(tokens: &[Token], i: &mut usize, prefix: Vec<String>, out: &mut Vec<NamedPath>) {
    let mut path = prefix;
    if tokens.get(*i).is_some_and(|t| t.tok == Tok::PathSep) {
        // `::name`: another crate
        path.push("::".to_string());
        *i += 1;
    }
    while let Some(token) = tokens.get(*i) {
        *i += 1;
        if token.is('{') {
            use_group(tokens, i, &path, out);
            return;
        }
        let line = token.line;
        if token.is('*') {
            out.push(NamedPath {
                segments: path,
                line,
                scope: Vec::new(),
                binds: None,
            });
            return;
        }
        let Some(name) = token.ident() else { return };
        // `a::{self}` is `a` itself
        if name != "self" || path.is_empty() {
            path.push(name.to_string());
        }
        if tokens.get(*i).is_some_and(|t| t.tok == Tok::PathSep) {
            *i += 1;
            continue;
        }
        let mut binds = path.last().cloned();
        if tokens.get(*i).and_then(Token::ident) == Some("as") {
            binds = tokens
                .get(*i + 1)
                .and_then(Token::ident)
                .map(str::to_string);
            *i += 2;
        }
        out.push(NamedPath {
            segments: path,
            line,
            scope: Vec::new(),
            binds,
        });
        return;
    }
}

/// The items of a `{a, b::c}` group whose `{` is just behind `*i`.
fn use_group(tokens: &[Token], i: &mut usize, prefix: &[String], out: &mut Vec<NamedPath>) {
    while let Some(token) = tokens.get(*i) {
        if token.is('}') {
            *i += 1;
            return;
        }
        if token.is(',') {
            *i += 1;
            continue;
        }
        let before = *i;
        use_tree(tokens, i, prefix.to_vec(), out);
        if *i == before {
            *i += 1;
        }
    }
}

/// The paths of two or more segments outside `use` declarations (`a::b`, `crate::x::y`).
fn code_paths(tokens: &[Token], scopes: &[Vec<String>], skip: &[(usize, usize)]) -> Vec<NamedPath> {
    let in_use = |i: usize| skip.iter().any(|&(from, to)| from <= i && i <= to);
    let is_sep = |i: usize| tokens.get(i).is_some_and(|t| t.tok == Tok::PathSep);
    let mut paths = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let starts = tokens[i].ident().is_some() && is_sep(i + 1) && !(i > 0 && is_sep(i - 1));
        // `pub(in crate::a)` restricts visibility; it uses nothing
        let restricts = i >= 3
            && tokens[i - 3].ident() == Some("pub")
            && tokens[i - 2].is('(')
            && tokens[i - 1].ident() == Some("in");
        if !starts || restricts || in_use(i) {
            i += 1;
            continue;
        }
        let (line, scope) = (tokens[i].line, scopes[i].clone());
        let mut segments = Vec::new();
        while let Some(name) = tokens.get(i).and_then(Token::ident) {
            segments.push(name.to_string());
            i += 1;
            if !is_sep(i) {
                break;
            }
            i += 1;
        }
        paths.push(NamedPath {
            segments,
            line,
            scope,
            binds: None,
        });
    }
    paths
}

/// For each token, the inline modules (`mod x { ... }`) it sits in.
fn inline_scopes(tokens: &[Token]) -> Vec<Vec<String>> {
    let mut open: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut scopes = Vec::with_capacity(tokens.len());
    for (i, token) in tokens.iter().enumerate() {
        if token.is('{') {
            depth += 1;
            if i >= 2 && tokens[i - 2].ident() == Some("mod") {
                if let Some(name) = tokens[i - 1].ident() {
                    open.push((name.to_string(), depth));
                }
            }
        } else if token.is('}') {
            if open.last().is_some_and(|(_, at)| *at == depth) {
                open.pop();
            }
            depth -= 1;
        }
        scopes.push(open.iter().map(|(name, _)| name.clone()).collect());
    }
    scopes
}

// ---------------------------------------------------------------------------------------------
// The graph: which module's code names which module, and where.

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Location {
    file: PathBuf,
    line: usize,
}

/// Module -> the modules it uses -> the lines that use them.
#[derive(Default)]
struct Graph {
    edges: BTreeMap<ModPath, BTreeMap<ModPath, Vec<Location>>>,
}

impl Graph {
    fn of(krate: &Crate) -> Graph {
        let mut graph = Graph::default();
        for (module, source) in &krate.modules {
            let uses = graph.edges.entry(module.clone()).or_default();
            for (target, line) in module_uses(krate, module, &source.tokens) {
                let file = source.file.clone();
                uses.entry(target)
                    .or_default()
                    .push(Location { file, line });
            }
        }
        graph
    }

    fn uses(&self, from: &[String], to: &[String]) -> bool {
        self.edges.get(from).is_some_and(|out| out.contains_key(to))
    }
}

/// The modules other than itself that `module`'s code names, with the line of each naming.
fn module_uses(krate: &Crate, module: &ModPath, tokens: &[Token]) -> Vec<(ModPath, usize)> {
    let scopes = inline_scopes(tokens);
    let (imports, ranges) = use_paths(tokens, &scopes);
    // the modules that `use` brought in by name: `use super::cells;` makes `cells::x` a path
    let mut aliases: BTreeMap<String, ModPath> = BTreeMap::new();
    let mut found = Vec::new();
    for import in &imports {
        if let Some((target, whole)) = resolve(krate, module, import, &aliases) {
            if let (true, Some(name)) = (whole, &import.binds) {
                aliases.insert(name.clone(), target.clone());
            }
            found.push((target, import.line));
        }
    }
    for path in code_paths(tokens, &scopes, &ranges) {
        found
            .extend(resolve(krate, module, &path, &aliases).map(|(target, _)| (target, path.line)));
    }
    found.retain(|(target, _)| target != module);
    found
}

/// The module that `path`, named in `module`, stands for: the longest prefix of it that is a
/// module, and whether that is the whole path. `None` for a path that starts elsewhere (another
/// crate, a local name, an enum).
fn resolve(
    krate: &Crate,
    module: &ModPath,
    path: &NamedPath,
    aliases: &BTreeMap<String, ModPath>,
) -> Option<(ModPath, bool)> {
    let here: ModPath = module.iter().chain(&path.scope).cloned().collect();
    let (first, rest) = path.segments.split_first()?;
    let mut full = match first.as_str() {
        "crate" | "$crate" => Vec::new(),
        "self" => here.clone(),
        "super" => here[..here.len().checked_sub(1)?].to_vec(),
        _ => {
            let child: ModPath = here.iter().chain([first]).cloned().collect();
            if krate.modules.contains_key(&child) {
                child
            } else {
                aliases.get(first)?.clone()
            }
        }
    };
    let mut rest = rest;
    // `super::super::x`
    while first == "super" && rest.first().is_some_and(|s| s == "super") {
        full.pop()?;
        rest = &rest[1..];
    }
    full.extend(rest.iter().cloned());
    let known = (0..=full.len())
        .rev()
        .find(|&n| krate.modules.contains_key(&full[..n]))?;
    Some((full[..known].to_vec(), known == full.len()))
}

// ---------------------------------------------------------------------------------------------
// Cycles: the strongly connected components of more than one module.

/// One strongly connected component: modules that all reach each other through `use`s.
struct Cycle {
    modules: Vec<ModPath>,
}

fn cycles(graph: &Graph) -> Vec<Cycle> {
    let mut tarjan = Tarjan::default();
    for module in graph.edges.keys() {
        if !tarjan.index.contains_key(module) {
            tarjan.visit(graph, module);
        }
    }
    tarjan.components.retain(|component| component.len() > 1);
    tarjan
        .components
        .into_iter()
        .map(|mut modules| {
            modules.sort();
            Cycle { modules }
        })
        .collect()
}

/// Tarjan's algorithm for strongly connected components.
#[derive(Default)]
struct Tarjan {
    index: BTreeMap<ModPath, usize>,
    low: BTreeMap<ModPath, usize>,
    stack: Vec<ModPath>,
    on_stack: BTreeSet<ModPath>,
    components: Vec<Vec<ModPath>>,
}

impl Tarjan {
    fn visit(&mut self, graph: &Graph, module: &ModPath) {
        let index = self.index.len();
        self.index.insert(module.clone(), index);
        self.low.insert(module.clone(), index);
        self.stack.push(module.clone());
        self.on_stack.insert(module.clone());
        for next in graph.edges.get(module).into_iter().flat_map(BTreeMap::keys) {
            if !self.index.contains_key(next) {
                self.visit(graph, next);
                self.lower(module, self.low[next]);
            } else if self.on_stack.contains(next) {
                self.lower(module, self.index[next]);
            }
        }
        if self.low[module] == index {
            let mut component = Vec::new();
            while let Some(member) = self.stack.pop() {
                self.on_stack.remove(&member);
                let last = &member == module;
                component.push(member);
                if last {
                    break;
                }
            }
            self.components.push(component);
        }
    }

    fn lower(&mut self, module: &ModPath, to: usize) {
        let low = self.low.get_mut(module).unwrap();
        *low = (*low).min(to);
    }
}

/// A shortest circle through the component's first module, as the modules along it.
fn example_circle(graph: &Graph, cycle: &Cycle) -> Vec<ModPath> {
    let start = &cycle.modules[0];
    let mut came_from: BTreeMap<&ModPath, &ModPath> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(module) = queue.pop_front() {
        for next in graph.edges[module].keys() {
            if !cycle.modules.contains(next) || came_from.contains_key(next) {
                continue;
            }
            came_from.insert(next, module);
            if next == start {
                let mut circle = vec![start.clone()];
                let mut at = module;
                while at != start {
                    circle.push(at.clone());
                    at = came_from[at];
                }
                circle.push(start.clone());
                circle.reverse();
                return circle;
            }
            queue.push_back(next);
        }
    }
    unreachable!("a strongly connected component has a circle through each member")
}

/// The component's modules, a circle through it, and each edge inside it with its lines.
fn describe(graph: &Graph, cycle: &Cycle, base: &Path) -> String {
    let names: Vec<String> = cycle.modules.iter().map(|m| display(m)).collect();
    let circle: Vec<String> = example_circle(graph, cycle)
        .iter()
        .map(|m| display(m))
        .collect();
    let mut text = format!(
        "{} modules use each other in a circle: {}\n  e.g. {}\n",
        names.len(),
        names.join(", "),
        circle.join(" -> ")
    );
    for from in &cycle.modules {
        for (to, lines) in &graph.edges[from] {
            if cycle.modules.contains(to) {
                let at = locations(lines, base);
                let _ = writeln!(text, "  {} -> {}  ({})", display(from), display(to), at);
            }
        }
    }
    text
}

/// `file:line` of each different line, the first few of many.
fn locations(lines: &[Location], base: &Path) -> String {
    const SHOWN: usize = 4;
    let mut distinct = lines.to_vec();
    distinct.sort();
    distinct.dedup();
    let shown: Vec<String> = distinct
        .iter()
        .take(SHOWN)
        .map(|l| located(l, base))
        .collect();
    match distinct.len().checked_sub(SHOWN) {
        Some(more) if more > 0 => format!("{} and {more} more", shown.join(", ")),
        _ => shown.join(", "),
    }
}

fn located(location: &Location, base: &Path) -> String {
    let file = location.file.strip_prefix(base).unwrap_or(&location.file);
    format!("{}:{}", file.display(), location.line)
}

// ---------------------------------------------------------------------------------------------
// The check of this repository's sources.

/// The crate directory whose `src/` is checked, and that `src/`.
fn checked_sources() -> (PathBuf, PathBuf) {
    match std::env::var_os("MODULE_GRAPH_SRC") {
        Some(src) => {
            let src = PathBuf::from(src);
            (src.parent().unwrap_or(&src).to_path_buf(), src)
        }
        None => {
            let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            (manifest.clone(), manifest.join("src"))
        }
    }
}

fn read_disk(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

#[test]
fn no_module_of_src_uses_itself_through_others() {
    let (base, src) = checked_sources();
    let mut report = String::new();
    for root in ["lib.rs", "main.rs"] {
        let graph = Graph::of(&load_crate(&src.join(root), &read_disk));
        // the sources were read at all
        assert!(
            graph.edges.len() > 5,
            "src/{root}: {} modules",
            graph.edges.len()
        );
        for cycle in cycles(&graph) {
            let _ = writeln!(
                report,
                "in the crate of src/{root}, {}",
                describe(&graph, &cycle, &base)
            );
        }
    }
    assert!(report.is_empty(), "import circles:\n\n{report}");
}

/// The crate root re-exports (`pub use config::ModelConfig`); a module that imported through
/// it would depend on every module the root re-exports from, and close a circle with any of
/// them that depends on it. So modules name each item where it is defined.
#[test]
fn no_library_module_imports_through_the_crate_root() {
    let (base, src) = checked_sources();
    let graph = Graph::of(&load_crate(&src.join("lib.rs"), &read_disk));
    let root = ModPath::new();
    let through_root: Vec<String> = (graph.edges.iter())
        .filter_map(|(module, uses)| Some((module, uses.get(&root)?)))
        .map(|(module, lines)| format!("  {} ({})", display(module), locations(lines, &base)))
        .collect();
    assert!(
        through_root.is_empty(),
        "modules that import through the crate root instead of from where an item is \
         defined:\n{}",
        through_root.join("\n")
    );
}

#[test]
fn the_library_graph_holds_known_edges() {
    let (_, src) = checked_sources();
    let graph = Graph::of(&load_crate(&src.join("lib.rs"), &read_disk));
    let module = |path: &str| -> ModPath { path.split("::").map(str::to_string).collect() };
    assert!(graph.uses(
        &module("internals::gpu::context"),
        &module("internals::gpu::device")
    ));
    assert!(graph.uses(&module("train::engine"), &module("cpu")));
    assert!(graph.edges.contains_key(&module("cpu::packed::wide")));
    assert!(graph
        .edges
        .contains_key(&module("internals::distributed::mpi")));
}

// ---------------------------------------------------------------------------------------------
// The checker on small trees in memory.

fn graph_of(files: &[(&str, &str)]) -> Graph {
    let files: BTreeMap<PathBuf, String> = files
        .iter()
        .map(|(path, text)| (PathBuf::from(path), text.to_string()))
        .collect();
    Graph::of(&load_crate(Path::new("src/lib.rs"), &|path| {
        files.get(path).cloned()
    }))
}

fn module(path: &str) -> ModPath {
    if path == "crate" {
        return Vec::new();
    }
    path.split("::").map(str::to_string).collect()
}

/// Each cycle's modules, by name.
fn cycle_names(graph: &Graph) -> Vec<Vec<String>> {
    let names = |c: &Cycle| c.modules.iter().map(|m| display(m)).collect();
    cycles(graph).iter().map(names).collect()
}

/// The edges out of `from`, by name, with their lines.
fn edges_from(graph: &Graph, from: &str) -> Vec<(String, Vec<usize>)> {
    let lines = |locations: &Vec<Location>| locations.iter().map(|l| l.line).collect();
    graph.edges[&module(from)]
        .iter()
        .map(|(to, at)| (display(to), lines(at)))
        .collect()
}

#[test]
fn a_two_module_circle_is_found_with_its_lines() {
    let graph = graph_of(&[
        ("src/lib.rs", "mod a;\nmod b;\n"),
        ("src/a.rs", "use crate::b::Thing;\n"),
        (
            "src/b.rs",
            "pub struct Thing;\n\npub fn f() {\n    crate::a::g();\n}\n",
        ),
    ]);
    assert_eq!(cycle_names(&graph), vec![vec!["a", "b"]]);
    assert_eq!(edges_from(&graph, "a"), vec![("b".to_string(), vec![1])]);
    assert_eq!(edges_from(&graph, "b"), vec![("a".to_string(), vec![4])]);
    let text = describe(&graph, &cycles(&graph)[0], Path::new(""));
    assert!(text.contains("a -> b  (src/a.rs:1)"), "{text}");
    assert!(text.contains("b -> a  (src/b.rs:4)"), "{text}");
    assert!(text.contains("e.g. a -> b -> a"), "{text}");
}

/// `#[path]` places a module's file anywhere: the module keeps its place in the tree (here
/// `internals::gpu`, from src/gpu/mod.rs), and its own children are found beside its file.
#[test]
fn a_module_placed_by_a_path_attribute_keeps_its_place_in_the_tree() {
    let graph = graph_of(&[
        ("src/lib.rs", "pub mod internals;\nmod plan;\n"),
        (
            "src/internals.rs",
            "#[path = \"gpu/mod.rs\"]\npub mod gpu;\n",
        ),
        ("src/gpu/mod.rs", "mod device;\n"),
        ("src/gpu/device.rs", "use crate::plan::Plan;\n"),
        (
            "src/plan.rs",
            "pub struct Plan;\nuse crate::internals::gpu::device;\n",
        ),
    ]);
    assert_eq!(
        cycle_names(&graph),
        vec![vec!["internals::gpu::device", "plan"]]
    );
}

#[test]
fn a_parent_child_circle_through_super_is_found() {
    let graph = graph_of(&[
        ("src/lib.rs", "pub mod p;\n"),
        (
            "src/p/mod.rs",
            "mod c;\npub use c::Thing;\npub fn helper() {}\n",
        ),
        (
            "src/p/c.rs",
            "pub struct Thing;\nfn f() { super::helper() }\n",
        ),
    ]);
    assert_eq!(cycle_names(&graph), vec![vec!["p", "p::c"]]);
}

#[test]
fn a_circle_through_the_crate_root_and_a_re_export_is_found() {
    // the root re-exports `a`'s item while `b` imports it through the root
    let graph = graph_of(&[
        ("src/lib.rs", "mod a;\nmod b;\npub use a::Item;\n"),
        ("src/a.rs", "use crate::b::Other;\npub struct Item;\n"),
        ("src/b.rs", "use crate::Item;\npub struct Other;\n"),
    ]);
    assert_eq!(cycle_names(&graph), vec![vec!["crate", "a", "b"]]);
}

#[test]
fn a_tree_without_circles_passes() {
    let graph = graph_of(&[
        (
            "src/lib.rs",
            "pub mod low;\npub mod mid;\npub mod top;\npub use low::Low;\n",
        ),
        ("src/low.rs", "pub struct Low;\n"),
        (
            "src/mid/mod.rs",
            "mod part;\nmod rows;\npub use part::Part;\n",
        ),
        ("src/mid/rows.rs", "pub fn row() {}\n"),
        // a sibling through `super::`, the crate's module through `crate::`
        (
            "src/mid/part.rs",
            "use super::rows::row;\nuse crate::low::Low;\npub struct Part;\n",
        ),
        (
            "src/top.rs",
            "pub fn run() { crate::mid::Part; crate::low::Low; }\n",
        ),
    ]);
    assert!(cycles(&graph).is_empty(), "{:?}", cycle_names(&graph));
    assert_eq!(
        edges_from(&graph, "mid::part"),
        [("low".into(), vec![2]), ("mid::rows".into(), vec![1])]
    );
    assert_eq!(edges_from(&graph, "crate"), [("low".to_string(), vec![4])]);
}

#[test]
fn comments_literals_and_test_items_are_not_uses() {
    let a = r##"// use crate::b::X;
/// [`crate::b::X`]
/* crate::b::x() /* nested */ crate::b::y() */
const S: &str = "crate::b::z // not a comment either";
const R: &str = r#"crate::b::q"#;
const C: char = '"';
fn f<'a>(x: &'a str) -> &'a str { x }

#[cfg(test)]
mod tests {
    use crate::b::X;
    fn t() { super::super::b::g() }
}

#[cfg(test)]
use crate::b::Y;
"##;
    let graph = graph_of(&[
        ("src/lib.rs", "mod a;\nmod b;\n"),
        ("src/a.rs", a),
        (
            "src/b.rs",
            "pub struct X;\nfn g() { crate::a::f(\"\") ; }\n",
        ),
    ]);
    assert!(cycles(&graph).is_empty(), "{:?}", cycle_names(&graph));
    assert!(
        edges_from(&graph, "a").is_empty(),
        "{:?}",
        edges_from(&graph, "a")
    );
}

#[test]
fn a_path_stands_for_the_longest_prefix_that_is_a_module() {
    let graph = graph_of(&[
        ("src/lib.rs", "pub mod cpu;\npub mod error;\npub trait Float {}\n"),
        ("src/error.rs", "pub struct Error;\n"),
        ("src/cpu/mod.rs", "pub mod lstm;\npub mod gru;\npub fn batch_parts() {}\n"),
        (
            "src/cpu/lstm.rs",
            "use super::batch_parts;\nuse crate::{Float, error::{self as e}};\npub fn lstm_forward() {}\n",
        ),
        ("src/cpu/gru.rs", "fn f() {\n    crate::cpu::lstm::lstm_forward();\n}\n"),
    ]);
    let lstm = edges_from(&graph, "cpu::lstm");
    let expected = [("crate", vec![2]), ("cpu", vec![1]), ("error", vec![2])];
    let expected: Vec<(String, Vec<usize>)> = expected
        .iter()
        .map(|(m, l)| (m.to_string(), l.clone()))
        .collect();
    assert_eq!(lstm, expected);
    assert_eq!(
        edges_from(&graph, "cpu::gru"),
        [("cpu::lstm".to_string(), vec![2])]
    );
}

#[test]
fn a_module_brought_in_by_name_leads_on_to_its_children() {
    let graph = graph_of(&[
        ("src/lib.rs", "pub mod gpu;\n"),
        ("src/gpu/mod.rs", "pub mod cells;\npub mod model;\n"),
        ("src/gpu/cells/mod.rs", "pub mod lstm;\n"),
        ("src/gpu/cells/lstm.rs", "pub struct Lstm;\n"),
        (
            "src/gpu/model.rs",
            "use super::cells;\nfn f() {\n    let _ = cells::lstm::Lstm;\n}\n",
        ),
    ]);
    let model = edges_from(&graph, "gpu::model");
    assert_eq!(
        model,
        [
            ("gpu::cells".into(), vec![1]),
            ("gpu::cells::lstm".into(), vec![3])
        ]
    );
}

#[test]
fn a_visibility_restriction_is_no_use_but_a_for_loop_over_a_path_is() {
    let graph = graph_of(&[
        ("src/lib.rs", "pub mod a;\npub mod b;\n"),
        ("src/a.rs", "pub(in crate::b) fn f() {}\n"),
        ("src/b.rs", "fn g() {\n    for x in crate::a::all() {}\n}\n"),
    ]);
    assert!(
        edges_from(&graph, "a").is_empty(),
        "{:?}",
        edges_from(&graph, "a")
    );
    assert_eq!(edges_from(&graph, "b"), [("a".to_string(), vec![2])]);
}

#[test]
fn inline_modules_belong_to_their_file() {
    let graph = graph_of(&[
        ("src/lib.rs", "pub mod proto;\n"),
        (
            "src/proto.rs",
            "pub mod kinds {\n    pub use super::Kind;\n}\npub struct Kind;\n",
        ),
    ]);
    assert!(edges_from(&graph, "proto").is_empty());
}

#[test]
fn other_crates_are_outside_the_graph() {
    let files: BTreeMap<PathBuf, String> = [
        (
            "src/main.rs",
            "mod cli;\nuse rnn_wgpu::cpu;\nfn main() { cli::run() }\n",
        ),
        (
            "src/cli/mod.rs",
            "use ::rnn_wgpu::train;\npub fn run() { rnn_wgpu::Float; }\n",
        ),
    ]
    .iter()
    .map(|(path, text)| (PathBuf::from(path), text.to_string()))
    .collect();
    let krate = load_crate(Path::new("src/main.rs"), &|path| files.get(path).cloned());
    let graph = Graph::of(&krate);
    assert_eq!(edges_from(&graph, "crate"), [("cli".to_string(), vec![3])]);
    assert!(edges_from(&graph, "cli").is_empty());
}
