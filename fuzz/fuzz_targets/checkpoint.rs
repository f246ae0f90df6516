#![no_main]
// Body in src/lib.rs, shared with the stable replay test tests/fuzz_corpus.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| rnn_wgpu_fuzz::checkpoint(data));
