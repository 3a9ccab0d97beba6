//! Token sampling from raw logits: top-k, top-p, min-p, temperature, a seeded generator, and the
//! model's own log-probability of the chosen token.
//!
//! Sampling is done here rather than by llama.cpp's sampler chain so that every branch has its own
//! deterministic generator and every chosen token comes with its unfiltered log-probability.

use super::SamplingParams;

/// A small, fast, seedable generator (SplitMix64); each request owns one.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        // Mix the seed once so that seeds 0, 1, 2, … start far apart.
        let mut rng = Self(seed ^ 0x005e_ed0f_90d3_a11c);
        rng.next_u64();
        rng
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

// The passes over the whole vocabulary (its largest logit; then, fused, the sums behind the
// log-sum-exp, self-certainty and entropy) run once per sampled token and, on a GPU, cost as much
// as the forward pass itself: with 49,152 logits they took about 0.4 ms per token compiled for
// baseline x86-64. Each is written once, portably, in eight independent lanes so that it
// vectorises, and compiled a second time with AVX2 (twice the lanes per instruction), picked at
// run time where the processor has it. Both compile the same IEEE operations in the same order
// (no fused multiply-add is introduced), so they give the same bits.

/// Runs `$portable(args…)` compiled with AVX2 where the processor has it, else as built.
macro_rules! with_avx2 {
    ($portable:ident ( $($arg:ident: $ty:ty),* ) -> $ret:ty) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2")]
            unsafe fn avx2($($arg: $ty),*) -> $ret {
                $portable($($arg),*)
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the processor supports AVX2, the only feature the function enables.
                return unsafe { avx2($($arg),*) };
            }
        }
        $portable($($arg),*)
    }};
}

/// The largest logit (NaN-free input assumed; llama.cpp's logits are finite or -inf).
pub(crate) fn max_logit(logits: &[f32]) -> f32 {
    with_avx2!(max_logit_lanes(logits: &[f32]) -> f32)
}

#[inline(always)]
fn max_logit_lanes(logits: &[f32]) -> f32 {
    // Eight independent lanes so that the loop vectorises.
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = logits.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (m, &x) in lanes.iter_mut().zip(c) {
            *m = if x > *m { x } else { *m };
        }
    }
    rest.iter()
        .chain(lanes.iter())
        .copied()
        .fold(f32::NEG_INFINITY, f32::max)
}

/// exp(x) for x <= 0, branch-free so that loops over it vectorise; relative error below 2e-6.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    // exp(x) = 2^t with t = x·log2(e) = i + f, i = round(t), f in [-0.5, 0.5]. Adding 1.5·2^23
    // rounds t to an integer in the float adder and leaves that integer in the low mantissa bits,
    // which avoids float-to-int conversions that do not vectorise on baseline x86-64.
    const ROUND: f32 = 12_582_912.0;
    let t = (if x > -87.0 { x } else { -87.0 }) * std::f32::consts::LOG2_E;
    let r = t + ROUND;
    let i = (r.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let f = (t - (r - ROUND)) * std::f32::consts::LN_2;
    // e^f for |f| <= 0.35: Taylor to degree 6.
    let p = 1.0
        + f * (1.0
            + f * (0.5
                + f * (1.0 / 6.0 + f * (1.0 / 24.0 + f * (1.0 / 120.0 + f * (1.0 / 720.0))))));
    p * f32::from_bits(((i + 127) as u32) << 23)
}

/// One pass over `logits` given their largest, `max`: with d = x − max clamped to −87 (masked
/// tokens are −∞), Σ e^d, Σ d and Σ e^d·d.
#[derive(Debug, Clone, Copy)]
struct Sums {
    exp: f64,
    d: f64,
    exp_d: f64,
}

fn sums(logits: &[f32], max: f32) -> Sums {
    with_avx2!(sums_lanes(logits: &[f32], max: f32) -> Sums)
}

#[inline(always)]
fn sums_lanes(logits: &[f32], max: f32) -> Sums {
    let mut exp = [0.0f32; 8];
    let mut sum = [0.0f32; 8];
    let mut weighted = [0.0f32; 8];
    let chunks = logits.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (((e, s), w), &x) in exp
            .iter_mut()
            .zip(sum.iter_mut())
            .zip(weighted.iter_mut())
            .zip(c)
        {
            let d = if x - max > -87.0 { x - max } else { -87.0 };
            let ed = exp_nonpositive(d);
            *e += ed;
            *s += d;
            *w += ed * d;
        }
    }
    let lanes = |l: [f32; 8]| l.iter().map(|&v| f64::from(v)).sum::<f64>();
    let (mut d, mut exp_d) = (lanes(sum), lanes(weighted));
    let mut exp_rest = 0.0;
    for &x in rest {
        let dx = (x - max).max(-87.0);
        let ex = exp_nonpositive(dx);
        exp_rest += f64::from(ex);
        d += f64::from(dx);
        exp_d += f64::from(ex * dx);
    }
    Sums {
        exp: lanes(exp) + exp_rest,
        d,
        exp_d,
    }
}

/// What one token's distribution (temperature 1) comes to, from two passes over the vocabulary.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Summary {
    /// The largest logit.
    pub(crate) max: f32,
    /// log Σ e^logit: a token's log-probability is its logit minus this.
    pub(crate) lse: f64,
    /// Self-certainty (Kang et al., 2025): KL(U ‖ p), the divergence of the uniform distribution
    /// over the vocabulary from the model's, `lse − mean(logits) − ln V`, in nats. 0 for a
    /// uniform distribution, large when the mass is on few tokens.
    pub(crate) certainty: f32,
    /// Entropy, `−Σ p log p`, in nats: 0 for a one-hot distribution, `ln V` for a uniform one.
    pub(crate) entropy: f32,
}

/// The [`Summary`] of `logits`. Logits more than 87 below the largest count as 87 below it.
pub(crate) fn summarize(logits: &[f32]) -> Summary {
    let max = max_logit(logits);
    if logits.is_empty() || !max.is_finite() {
        return Summary {
            max,
            lse: f64::from(max),
            certainty: 0.0,
            entropy: 0.0,
        };
    }
    let s = sums(logits, max);
    let lse = f64::from(max) + s.exp.ln();
    let n = logits.len() as f64;
    let shift = lse - f64::from(max); // ln Σ e^(x − max)
    let certainty = shift - s.d / n - n.ln();
    let entropy = shift - s.exp_d * (-shift).exp();
    Summary {
        max,
        lse,
        certainty: certainty.max(0.0) as f32,
        entropy: entropy.max(0.0) as f32,
    }
}

/// log(sum(exp(logits))), computed stably.
pub(crate) fn log_sum_exp(logits: &[f32]) -> f64 {
    summarize(logits).lse
}

/// The model's log-probability (temperature 1, no filters) of `token` given `logits`.
pub(crate) fn logprob(logits: &[f32], lse: f64, token: usize) -> f64 {
    f64::from(logits[token]) - lse
}

/// Reusable buffers, so that sampling does not allocate per token.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    cand: Vec<(f32, u32)>,
    top: Vec<(f32, u32)>,
}

/// DeepConf's token confidence: minus the mean log-probability (temperature 1) of the `k` most
/// likely tokens given `logits` (`lse` their log-sum-exp). High when the model is sure: the top
/// tokens other than the first then carry very little mass.
pub(crate) fn top_k_confidence(logits: &[f32], lse: f64, k: usize, scratch: &mut Scratch) -> f32 {
    let k = k.clamp(1, logits.len().max(1));
    let top = &mut scratch.top;
    top.clear();
    top_k_into(logits, k, top);
    if top.is_empty() {
        return 0.0;
    }
    let mean = top.iter().map(|&(l, _)| f64::from(l) - lse).sum::<f64>() / top.len() as f64;
    (-mean) as f32
}

/// The `k` most likely tokens given `logits` (`lse` their log-sum-exp) with their
/// log-probabilities (temperature 1), most likely first, ties to the lower id.
pub(crate) fn top_logprobs(
    logits: &[f32],
    lse: f64,
    k: usize,
    scratch: &mut Scratch,
) -> Vec<(super::TokenId, f32)> {
    let top = &mut scratch.top;
    top.clear();
    if k == 0 {
        return Vec::new();
    }
    top_k_into(logits, k.min(logits.len()), top);
    top.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    top.iter()
        .map(|&(l, id)| (id as super::TokenId, (f64::from(l) - lse) as f32))
        .collect()
}

/// Picks the next token. Returns the token and its unfiltered log-probability.
///
/// `params` must have been validated.
#[cfg(test)]
pub(crate) fn sample(
    logits: &[f32],
    params: &SamplingParams,
    rng: &mut Rng,
    scratch: &mut Scratch,
) -> (u32, f64) {
    let (token, lp, _) = sample_summarized(logits, params, rng, scratch);
    (token, lp)
}

/// [`sample`], also returning the [`Summary`] of `logits` (for the signals a generation records).
pub(crate) fn sample_summarized(
    logits: &[f32],
    params: &SamplingParams,
    rng: &mut Rng,
    scratch: &mut Scratch,
) -> (u32, f64, Summary) {
    let summary = summarize(logits);
    let token = if params.temperature == 0.0 {
        argmax_of(logits, summary.max)
    } else {
        sample_filtered(logits, summary.max, params, rng, scratch)
    };
    (token, logprob(logits, summary.lse, token as usize), summary)
}

/// The most likely token; ties go to the lowest id.
#[cfg(test)]
pub(crate) fn argmax(logits: &[f32]) -> u32 {
    argmax_of(logits, max_logit(logits))
}

/// The first token whose logit is `max` (the largest), 0 when none is (no logits, or a NaN
/// first: comparisons with it fail).
fn argmax_of(logits: &[f32], max: f32) -> u32 {
    if logits.first().is_none_or(|l| l.is_nan()) {
        return 0;
    }
    logits.iter().position(|&l| l == max).unwrap_or(0) as u32
}

fn sample_filtered(
    logits: &[f32],
    max: f32,
    params: &SamplingParams,
    rng: &mut Rng,
    scratch: &mut Scratch,
) -> u32 {
    let inv_t = 1.0 / params.temperature;
    let cand = &mut scratch.cand;
    cand.clear();
    let k = params.top_k as usize;
    if k > 0 && k < logits.len() {
        top_k_into(logits, k, cand);
    } else {
        // Tokens more than 30 nats (at this temperature) below the best carry less than 1e-13
        // of its mass each; leaving them out keeps the sort small without changing any
        // filter's choice in practice.
        let floor = max - 30.0 * params.temperature;
        cand.extend(
            logits
                .iter()
                .enumerate()
                .filter(|&(_, &l)| l >= floor)
                .map(|(i, &l)| (l, i as u32)),
        );
    }
    let by_logit_desc = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));

    cand.sort_unstable_by(by_logit_desc);

    // Temperature-scaled weights relative to the best token (which has weight 1).
    let weight = |l: f32| f64::from((l - max) * inv_t).exp();

    if params.top_p < 1.0 {
        let total: f64 = cand.iter().map(|&(l, _)| weight(l)).sum();
        let target = f64::from(params.top_p) * total;
        let mut acc = 0.0;
        let mut keep = cand.len();
        for (i, &(l, _)) in cand.iter().enumerate() {
            acc += weight(l);
            if acc >= target {
                keep = i + 1;
                break;
            }
        }
        cand.truncate(keep.max(1));
    }
    if params.min_p > 0.0 {
        // Relative to the best *remaining* probability, which is the first candidate's.
        let best = weight(cand[0].0);
        let threshold = f64::from(params.min_p) * best;
        let keep = cand
            .iter()
            .take_while(|&&(l, _)| weight(l) >= threshold)
            .count();
        cand.truncate(keep.max(1));
    }

    let total: f64 = cand.iter().map(|&(l, _)| weight(l)).sum();
    let mut r = rng.next_f64() * total;
    for &(l, id) in cand.iter() {
        r -= weight(l);
        if r < 0.0 {
            return id;
        }
    }
    cand.last().map_or(0, |&(_, id)| id)
}

/// The `k` largest logits (ties: lower id first), unordered, through a size-k min-heap: one
/// comparison per token once the heap is full.
fn top_k_into(logits: &[f32], k: usize, heap: &mut Vec<(f32, u32)>) {
    // "a below b" in the heap order: smaller logit, or equal logit and higher id.
    let below = |a: (f32, u32), b: (f32, u32)| a.0 < b.0 || (a.0 == b.0 && a.1 > b.1);
    let sift_down = |heap: &mut Vec<(f32, u32)>, mut i: usize| loop {
        let (l, r) = (2 * i + 1, 2 * i + 2);
        let mut m = i;
        if l < heap.len() && below(heap[l], heap[m]) {
            m = l;
        }
        if r < heap.len() && below(heap[r], heap[m]) {
            m = r;
        }
        if m == i {
            break;
        }
        heap.swap(i, m);
        i = m;
    };
    // Once the heap is full, a block of logits none of which beats its least member is skipped
    // on its maximum (one vectorised pass): that is nearly every block of a vocabulary.
    const BLOCK: usize = 64;
    for (b, block) in logits.chunks(BLOCK).enumerate() {
        if heap.len() == k
            && heap
                .first()
                .is_some_and(|least| max_logit_lanes(block) <= least.0)
        {
            continue;
        }
        for (j, &l) in block.iter().enumerate() {
            let item = (l, (b * BLOCK + j) as u32);
            if heap.len() < k {
                heap.push(item);
                let mut i = heap.len() - 1;
                while i > 0 && below(heap[i], heap[(i - 1) / 2]) {
                    heap.swap(i, (i - 1) / 2);
                    i = (i - 1) / 2;
                }
            } else if l > heap[0].0 {
                heap[0] = item;
                sift_down(heap, 0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_k: u32, top_p: f32, min_p: f32) -> SamplingParams {
        SamplingParams {
            temperature,
            top_k,
            top_p,
            min_p,
            seed: 7,
        }
    }

    #[test]
    fn certainty_and_entropy_match_their_definitions() {
        let stats = |l: &[f32]| {
            let s = summarize(l);
            (s.certainty, s.entropy)
        };
        // Uniform over 16 tokens: no divergence from uniform, entropy ln 16.
        let (c, h) = stats(&[0.5f32; 16]);
        assert!(c.abs() < 1e-4, "{c}");
        assert!((f64::from(h) - 16f64.ln()).abs() < 1e-4, "{h}");
        // A distribution written out: p = softmax([2, 1, 0, -1, 0, 0, 0, 0, 3]).
        let l = [2.0f32, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 3.0];
        let lse = l.iter().map(|&x| f64::from(x).exp()).sum::<f64>().ln();
        let p: Vec<f64> = l.iter().map(|&x| (f64::from(x) - lse).exp()).collect();
        let want_h = -p.iter().map(|&q| q * q.ln()).sum::<f64>();
        let v = l.len() as f64;
        let want_c = -v.ln() - p.iter().map(|&q| q.ln()).sum::<f64>() / v;
        let (c, h) = stats(&l);
        assert!((f64::from(c) - want_c).abs() < 1e-4, "{c} vs {want_c}");
        assert!((f64::from(h) - want_h).abs() < 1e-4, "{h} vs {want_h}");
        // Peaked: certainty grows, entropy falls; a masked (-inf) token does not poison either.
        let (c_peak, h_peak) = stats(&[20.0, 0.0, 0.0, f32::NEG_INFINITY]);
        assert!(c_peak.is_finite() && c_peak > c, "{c_peak}");
        assert!(h_peak < 1e-6, "{h_peak}");
    }

    #[test]
    fn confidence_is_minus_the_mean_top_k_logprob() {
        let mut scratch = Scratch::default();
        // Uniform over 4 tokens: every logprob is ln(1/4), whatever k.
        let uniform = [1.0f32; 4];
        let lse = log_sum_exp(&uniform);
        for k in [1, 2, 4, 10] {
            let c = top_k_confidence(&uniform, lse, k, &mut scratch);
            assert!((f64::from(c) - 4f64.ln()).abs() < 1e-4, "k={k}: {c}");
        }
        // A peaked distribution is more confident than a flat one at the same k.
        let peaked = [10.0f32, 0.0, 0.0, 0.0];
        let c_peaked = top_k_confidence(&peaked, log_sum_exp(&peaked), 2, &mut scratch);
        let c_flat = top_k_confidence(&uniform, lse, 2, &mut scratch);
        assert!(c_peaked > c_flat, "{c_peaked} vs {c_flat}");
        // k = 2 on the peaked one: -(lp(10) + lp(0)) / 2.
        let l = log_sum_exp(&peaked);
        let want = -((10.0 - l) + (0.0 - l)) / 2.0;
        assert!((f64::from(c_peaked) - want).abs() < 1e-4);
    }

    #[test]
    fn top_logprobs_are_the_k_most_likely_in_order() {
        let logits = [0.0f32, 3.0, 1.0, 3.0, -2.0];
        let lse = log_sum_exp(&logits);
        let mut s = Scratch::default();
        let top = top_logprobs(&logits, lse, 3, &mut s);
        let ids: Vec<i32> = top.iter().map(|&(id, _)| id).collect();
        assert_eq!(ids, [1, 3, 2], "ties go to the lower id");
        for &(id, lp) in &top {
            let want = f64::from(logits[id as usize]) - lse;
            assert!((f64::from(lp) - want).abs() < 1e-5, "{id}: {lp} vs {want}");
        }
        assert_eq!(top_logprobs(&logits, lse, 0, &mut s), []);
        assert_eq!(top_logprobs(&logits, lse, 9, &mut s).len(), 5);
    }

    #[test]
    fn greedy_picks_the_argmax_and_reports_its_logprob() {
        let logits = [0.0, 2.0, 1.0, 2.0];
        let (tok, lp) = sample(
            &logits,
            &SamplingParams::greedy(),
            &mut Rng::new(1),
            &mut Scratch::default(),
        );
        assert_eq!(tok, 1, "ties go to the lowest id");
        let expected = 2.0 - (1.0f64 + 2.0f64.exp() * 2.0 + 1.0f64.exp()).ln();
        assert!((lp - expected).abs() < 1e-6, "{lp} vs {expected}");
    }

    #[test]
    fn same_seed_same_tokens_other_seed_differs() {
        let logits: Vec<f32> = (0..200).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let p = params(1.0, 0, 1.0, 0.0);
        let run = |seed| {
            let mut rng = Rng::new(seed);
            let mut s = Scratch::default();
            (0..50)
                .map(|_| sample(&logits, &p, &mut rng, &mut s).0)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn top_k_one_is_greedy() {
        let logits = [0.5, 3.0, 2.9, -1.0];
        let mut rng = Rng::new(9);
        let mut s = Scratch::default();
        for _ in 0..100 {
            assert_eq!(
                sample(&logits, &params(5.0, 1, 1.0, 0.0), &mut rng, &mut s).0,
                1
            );
        }
    }

    #[test]
    fn min_p_and_top_p_exclude_unlikely_tokens() {
        // Token 0 has ~88% of the mass, token 1 ~12%, the rest almost nothing.
        let logits = [5.0, 3.0, -5.0, -5.0, -5.0];
        let mut rng = Rng::new(11);
        let mut s = Scratch::default();
        let mut seen = [0u32; 5];
        for _ in 0..2000 {
            seen[sample(&logits, &params(1.0, 0, 1.0, 0.05), &mut rng, &mut s).0 as usize] += 1;
        }
        assert!(seen[2..].iter().all(|&c| c == 0), "{seen:?}");
        assert!(seen[1] > 100, "token 1 should survive min_p=0.05: {seen:?}");

        let mut seen = [0u32; 5];
        for _ in 0..2000 {
            seen[sample(&logits, &params(1.0, 0, 0.5, 0.0), &mut rng, &mut s).0 as usize] += 1;
        }
        assert_eq!(
            seen[0], 2000,
            "top_p=0.5 keeps only the top token: {seen:?}"
        );
    }

    #[test]
    fn fast_log_sum_exp_matches_the_exact_one() {
        let mut rng = Rng::new(3);
        for n in [1usize, 7, 8, 9, 1000, 49152] {
            let logits: Vec<f32> = (0..n)
                .map(|_| (rng.next_f64() as f32) * 40.0 - 25.0)
                .collect();
            let exact = {
                let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                f64::from(m)
                    + logits
                        .iter()
                        .map(|&l| f64::from(l - m).exp())
                        .sum::<f64>()
                        .ln()
            };
            let fast = log_sum_exp(&logits);
            assert!((fast - exact).abs() < 1e-5, "n={n}: {fast} vs {exact}");
        }
        assert_eq!(log_sum_exp(&[f32::NEG_INFINITY; 3]), f64::NEG_INFINITY);
        for x in [0.0f32, -0.3, -1.0, -5.5, -20.0, -86.0, -200.0] {
            let (fast, exact) = (exp_nonpositive(x), x.exp());
            assert!(
                (fast - exact).abs() <= 2e-6 * exact + 1e-37,
                "{x}: {fast} vs {exact}"
            );
        }
    }

    #[test]
    fn the_dispatched_passes_give_the_portable_bits() {
        // On a processor with AVX2 this compares the two compilations of each pass; without
        // it, the dispatch itself (which must then pick the portable one).
        let mut rng = Rng::new(11);
        for n in [0usize, 5, 8, 63, 64, 65, 1000, 49152] {
            let mut logits: Vec<f32> = (0..n)
                .map(|_| (rng.next_f64() as f32) * 60.0 - 40.0)
                .collect();
            if n > 3 {
                logits[2] = f32::NEG_INFINITY;
            }
            let max = max_logit(&logits);
            assert_eq!(max.to_bits(), max_logit_lanes(&logits).to_bits());
            if max.is_finite() {
                let (a, b) = (sums(&logits, max), sums_lanes(&logits, max));
                assert_eq!(
                    (a.exp.to_bits(), a.d.to_bits(), a.exp_d.to_bits()),
                    (b.exp.to_bits(), b.d.to_bits(), b.exp_d.to_bits()),
                    "n={n}"
                );
            }
            if n > 0 {
                let want =
                    logits
                        .iter()
                        .enumerate()
                        .fold(0, |best, (i, &l)| if l > logits[best] { i } else { best });
                assert_eq!(argmax(&logits) as usize, want, "n={n}");
            }
        }
        assert_eq!(argmax(&[f32::NAN, 1.0]), 0);
        assert_eq!(argmax(&[]), 0);
    }

    #[test]
    fn top_k_heap_finds_the_k_largest_with_low_ids_winning_ties() {
        let mut rng = Rng::new(8);
        let logits: Vec<f32> = (0..5000).map(|_| (rng.next_u64() % 50) as f32).collect();
        for k in [1usize, 5, 40, 4999] {
            let mut got = Vec::new();
            top_k_into(&logits, k, &mut got);
            got.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let mut all: Vec<(f32, u32)> = logits
                .iter()
                .enumerate()
                .map(|(i, &l)| (l, i as u32))
                .collect();
            all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            assert_eq!(got, all[..k], "k={k}");
        }
    }

    #[test]
    fn sampling_follows_the_tempered_distribution() {
        let logits = [1.0f32, 0.0];
        let mut rng = Rng::new(5);
        let mut s = Scratch::default();
        let n = 20000;
        let hits = (0..n)
            .filter(|_| sample(&logits, &params(1.0, 0, 1.0, 0.0), &mut rng, &mut s).0 == 0)
            .count();
        let expected = 1.0f64.exp() / (1.0f64.exp() + 1.0);
        let got = hits as f64 / n as f64;
        assert!((got - expected).abs() < 0.02, "{got} vs {expected}");
    }
}
