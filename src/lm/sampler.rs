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

/// log(sum(exp(logits))), computed stably.
pub(crate) fn log_sum_exp(logits: &[f32]) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return f64::from(max);
    }
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    f64::from(max) + sum.ln()
}

/// The model's log-probability (temperature 1, no filters) of `token` given `logits`.
pub(crate) fn logprob(logits: &[f32], lse: f64, token: usize) -> f64 {
    f64::from(logits[token]) - lse
}

/// Reusable buffers, so that sampling does not allocate per token.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    cand: Vec<(f32, u32)>,
}

/// Picks the next token. Returns the token and its unfiltered log-probability.
///
/// `params` must have been validated.
pub(crate) fn sample(
    logits: &[f32],
    params: &SamplingParams,
    rng: &mut Rng,
    scratch: &mut Scratch,
) -> (u32, f64) {
    let lse = log_sum_exp(logits);
    let token = if params.temperature == 0.0 {
        argmax(logits)
    } else {
        sample_filtered(logits, params, rng, scratch)
    };
    (token, logprob(logits, lse, token as usize))
}

/// The most likely token; ties go to the lowest id.
pub(crate) fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

fn sample_filtered(
    logits: &[f32],
    params: &SamplingParams,
    rng: &mut Rng,
    scratch: &mut Scratch,
) -> u32 {
    let inv_t = 1.0 / params.temperature;
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let cand = &mut scratch.cand;
    cand.clear();

    // Tokens more than 30 nats below the best carry less than 1e-13 of its mass each; leaving
    // them out keeps the sort small without changing any filter's choice in practice.
    let floor = max - 30.0 * params.temperature;
    cand.extend(
        logits
            .iter()
            .enumerate()
            .filter(|&(_, &l)| l >= floor)
            .map(|(i, &l)| (l, i as u32)),
    );
    let by_logit_desc = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));

    let k = params.top_k as usize;
    if k > 0 && k < cand.len() {
        cand.select_nth_unstable_by(k - 1, by_logit_desc);
        cand.truncate(k);
    }
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
