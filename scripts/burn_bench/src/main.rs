use burn::module::Module;
use burn::nn::loss::{MseLoss, Reduction};
use burn::nn::{Linear, LinearConfig, Lstm, LstmConfig};
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, DeviceKind, Distribution, Tensor};
use std::time::Instant;

#[derive(Module, Debug)]
struct Model {
    lstm: Lstm,
    linear: Linear,
}

impl Model {
    fn new(i: usize, h: usize, device: &Device) -> Self {
        Self {
            lstm: LstmConfig::new(i, h, true).init(device), // batch_first = true (default)
            linear: LinearConfig::new(h, 1).init(device),
        }
    }
    fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        let (_out, state) = self.lstm.forward(x, None);
        // state.hidden = hidden state at the last time step, [B, H]
        self.linear.forward(state.hidden)
    }
}

// Minimal block_on for wgpu's (immediately ready, on native) futures.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

fn list_adapters() {
    use burn::tensor::wgpu::wgpu;
    for backend in [wgpu::Backend::Vulkan, wgpu::Backend::Gl] {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: backend.into(),
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        for a in block_on(instance.enumerate_adapters(backend.into())) {
            let info = a.get_info();
            println!(
                "adapter: backend={:?} name={:?} type={:?} driver={:?} driver_info={:?}",
                info.backend, info.name, info.device_type, info.driver, info.driver_info
            );
        }
    }
}

fn bench(
    name: &str,
    device: &Device,
    (b, t, i, h): (usize, usize, usize, usize),
    warmup: usize,
    n: usize,
) {
    device.seed(0);
    let mut model = Model::new(i, h, device);
    let mut optim = SgdConfig::new().init();
    let x = Tensor::<3>::random([b, t, i], Distribution::Uniform(-1.0, 1.0), device);
    let y = Tensor::<2>::random([b, 1], Distribution::Default, device);
    let mse = MseLoss::new();
    let mut times = Vec::new();
    for step in 0..(warmup + n) {
        let t0 = Instant::now();
        let pred = model.forward(x.clone());
        let loss = mse.forward(pred, y.clone(), Reduction::Mean);
        let grads = loss.backward();
        let grads = GradientsParams::from_grads(grads, &model);
        model = optim.step(0.01, model, grads);
        let lv: f32 = loss.into_scalar(); // host read-back forces completion
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        eprintln!(
            "  [{name} {b},{t},{i},{h}] step {step} {} {ms:.1} ms loss {lv}",
            if step < warmup { "warmup" } else { "timed" }
        );
        if step >= warmup {
            times.push(ms);
        }
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = if times.len() % 2 == 1 {
        times[times.len() / 2]
    } else {
        (times[times.len() / 2 - 1] + times[times.len() / 2]) / 2.0
    };
    let min = times[0];
    let flops = 3.0 * 2.0 * (t * b * (i + h) * 4 * h) as f64;
    let gflops = flops / 1e9 / (median / 1e3);
    println!(
        "RESULT backend={name} shape=(B={b},T={t},I={i},H={h}) median_ms={median:.1} min_ms={min:.1} gflops={gflops:.2} timed_steps={n}"
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map(|s| s.as_str()).unwrap_or("all");
    // optional per-shape override of timed steps, e.g. "5,3,1"
    let ns: Vec<usize> = args
        .get(2)
        .map(|s| s.split(',').map(|x| x.parse().unwrap()).collect())
        .unwrap_or(vec![5, 3, 3]);
    let shapes = [(32, 100, 2, 128), (128, 256, 64, 256), (64, 1000, 2, 128)];
    // optional subset of shape indices to run, e.g. "2" or "0,1,2"
    let sel: Vec<usize> = args
        .get(3)
        .map(|s| s.split(',').map(|x| x.parse().unwrap()).collect())
        .unwrap_or(vec![0, 1, 2]);
    if which == "all" || which == "wgpu" {
        list_adapters();
        let device = Device::wgpu(DeviceKind::DefaultDevice).autodiff();
        println!("wgpu device: {:?}", device);
        for (k, s) in shapes.iter().enumerate().filter(|(k, _)| sel.contains(k)) {
            bench("wgpu", &device, *s, 1, ns[k]);
        }
    }
    if which == "all" || which == "ndarray" {
        #[allow(deprecated)]
        let device = Device::ndarray().autodiff();
        for (k, s) in shapes.iter().enumerate().filter(|(k, _)| sel.contains(k)) {
            bench("ndarray", &device, *s, 2, ns[k]);
        }
    }
}
