//! The GPU engine's modules import each other without circles: each module of `src/gpu` (a
//! file, or a folder such as `cells/`) names the modules it uses through `super::` or
//! `crate::gpu::` paths, and those references form no cycle. A circle would tie modules that
//! should be read, changed and tested apart (the device, the pipeline cache, the kernel policy,
//! the recording, the pass). Reads the sources; needs no adapter.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The identifiers `text` names right after each occurrence of `prefix`, including each item
/// of a `prefix{a, b::c}` group.
fn named_after(text: &str, prefix: &str) -> BTreeSet<String> {
    let word = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices(prefix) {
        let rest = &text[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            names.extend(group.split(',').map(|item| word(item.trim())));
        } else {
            names.insert(word(rest));
        }
    }
    names
}

/// Module name -> the other GPU modules it references.
fn gpu_module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/gpu");
    let mut modules: Vec<(String, String, bool)> = Vec::new();
    for entry in std::fs::read_dir(&root).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            for file in std::fs::read_dir(&path).unwrap() {
                let file = file.unwrap().path();
                // in cells/mod.rs `super::` is the engine; in cells/lstm.rs it is `cells`
                let top = file.file_stem().unwrap() == "mod";
                modules.push((name.clone(), std::fs::read_to_string(&file).unwrap(), top));
            }
        } else if name != "mod" {
            modules.push((name, std::fs::read_to_string(&path).unwrap(), true));
        }
    }
    let known: BTreeSet<String> = modules.iter().map(|(name, ..)| name.clone()).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, text, top) in &modules {
        let mut used = named_after(text, "crate::gpu::");
        if *top {
            used.extend(named_after(text, "super::"));
        }
        let edges = graph.entry(name.clone()).or_default();
        edges.extend(used.into_iter().filter(|m| known.contains(m) && m != name));
    }
    graph
}

/// A cycle of `graph`, if it has one, as the modules along it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        graph: &BTreeMap<String, BTreeSet<String>>,
        module: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|m| m == module) {
            let mut cycle = path[at..].to_vec();
            cycle.push(module.to_string());
            return Some(cycle);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_string());
        for next in &graph[module] {
            if let Some(cycle) = visit(graph, next, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(module.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|module| visit(graph, module, &mut Vec::new(), &mut done))
}

#[test]
fn gpu_modules_import_each_other_without_circles() {
    let graph = gpu_module_graph();
    // the graph is read at all: the context is built from the device and the pipelines
    assert!(graph["context"].contains("device"), "{graph:?}");
    assert!(graph["context"].contains("pipelines"), "{graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!("an import circle: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_cycle_finder_finds_a_planted_circle() {
    let mut graph = gpu_module_graph();
    graph.get_mut("device").unwrap().insert("context".into());
    let cycle = find_cycle(&graph).expect("device -> context -> device");
    assert!(cycle.contains(&"device".to_string()) && cycle.contains(&"context".to_string()));
}
