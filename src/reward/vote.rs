//! Votes over extracted answers: majority, and weighted by a score (the judge's).
//!
//! Answers are grouped by [`answer::normalize`]; candidates without an answer do not vote. Ties
//! are broken deterministically: larger total weight, then more votes, then the group whose first
//! member comes first.

use super::answer;

/// The winning group of a vote.
#[derive(Debug, Clone, PartialEq)]
pub struct VoteWinner {
    /// The normalised answer.
    pub answer: String,
    /// Indices of the candidates that gave it, in order.
    pub members: Vec<usize>,
    /// Its total weight (its vote count for a majority vote).
    pub weight: f64,
    /// Its share of all weight, in [0, 1].
    pub share: f64,
}

/// The most frequent answer. `None` when no candidate has an answer.
pub fn majority(answers: &[Option<String>]) -> Option<VoteWinner> {
    weighted(answers, &vec![1.0; answers.len()])
}

/// Every answer group, in order of first appearance, with its total weight and its share of
/// all weight (0 when all weights are 0). Weights must be finite and non-negative (others count
/// as 0).
///
/// # Panics
/// If `answers` and `weights` differ in length.
pub fn tally(answers: &[Option<String>], weights: &[f64]) -> Vec<VoteWinner> {
    assert_eq!(answers.len(), weights.len(), "one weight per answer");
    let mut groups: Vec<VoteWinner> = Vec::new();
    for (i, (a, &w)) in answers.iter().zip(weights).enumerate() {
        let Some(a) = a else { continue };
        let key = answer::normalize(a);
        if key.is_empty() {
            continue;
        }
        let w = if w.is_finite() && w > 0.0 { w } else { 0.0 };
        match groups.iter_mut().find(|g| g.answer == key) {
            Some(g) => {
                g.members.push(i);
                g.weight += w;
            }
            None => groups.push(VoteWinner {
                answer: key,
                members: vec![i],
                weight: w,
                share: 0.0,
            }),
        }
    }
    let total: f64 = groups.iter().map(|g| g.weight).sum();
    if total > 0.0 {
        for g in &mut groups {
            g.share = g.weight / total;
        }
    }
    groups
}

/// A weighted vote as a ranking: each candidate's score is its answer group's share of the vote,
/// and the pick is the member with the largest weight within the winning group (ties: the lowest
/// index); index 0 when no candidate has an answer.
///
/// # Panics
/// If `answers` and `weights` differ in length.
pub fn shares_and_pick(answers: &[Option<String>], weights: &[f64]) -> (Vec<f64>, usize) {
    let mut shares = vec![0.0; answers.len()];
    for group in tally(answers, weights) {
        for &m in &group.members {
            shares[m] = group.share;
        }
    }
    let pick = match weighted(answers, weights) {
        Some(w) => *w
            .members
            .iter()
            .max_by(|&&a, &&b| weights[a].total_cmp(&weights[b]).then(b.cmp(&a)))
            .expect("a winner has members"),
        None => 0,
    };
    (shares, pick)
}

/// The answer with the largest total weight. Weights must be finite and non-negative (others
/// count as 0). `None` when no candidate has an answer. When all weights are 0 the winner's
/// share is its share of the votes.
///
/// # Panics
/// If `answers` and `weights` differ in length.
pub fn weighted(answers: &[Option<String>], weights: &[f64]) -> Option<VoteWinner> {
    let groups = tally(answers, weights);
    let voters: usize = groups.iter().map(|g| g.members.len()).sum();
    let all_zero = groups.iter().all(|g| g.weight == 0.0);
    // Groups are in order of first appearance, so keeping the first of equals breaks the last tie.
    let mut best: Option<VoteWinner> = None;
    for g in groups {
        let better = match &best {
            None => true,
            Some(b) => {
                g.weight > b.weight || (g.weight == b.weight && g.members.len() > b.members.len())
            }
        };
        if better {
            best = Some(g);
        }
    }
    best.map(|mut b| {
        if all_zero {
            b.share = b.members.len() as f64 / voters.max(1) as f64;
        }
        b
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(xs: &[Option<&str>]) -> Vec<Option<String>> {
        xs.iter().map(|x| x.map(str::to_string)).collect()
    }

    #[test]
    fn majority_picks_the_most_frequent_normalised_answer() {
        let a = answers(&[
            Some("8"),
            Some("9"),
            Some("8.0"),
            None,
            Some("$8"),
            Some("9"),
        ]);
        let w = majority(&a).unwrap();
        assert_eq!(w.answer, "8");
        assert_eq!(w.members, vec![0, 2, 4]);
        assert!((w.share - 3.0 / 5.0).abs() < 1e-12);
    }

    #[test]
    fn ties_go_to_the_first_seen_answer() {
        let a = answers(&[Some("5"), Some("7"), Some("7"), Some("5")]);
        assert_eq!(majority(&a).unwrap().answer, "5");
        let a = answers(&[Some("7"), Some("5"), Some("5"), Some("7")]);
        assert_eq!(majority(&a).unwrap().answer, "7");
    }

    #[test]
    fn weights_can_overturn_the_majority() {
        let a = answers(&[Some("1"), Some("1"), Some("2")]);
        let w = weighted(&a, &[0.1, 0.2, 0.9]).unwrap();
        assert_eq!(w.answer, "2");
        assert!((w.share - 0.75).abs() < 1e-12);
        // Equal weight: more votes win.
        let w = weighted(&a, &[0.45, 0.45, 0.9]).unwrap();
        assert_eq!(w.answer, "1");
        // Bad weights count as zero.
        let w = weighted(&a, &[f64::NAN, -1.0, 0.5]).unwrap();
        assert_eq!(w.answer, "2");
    }

    #[test]
    fn no_answers_no_winner() {
        assert!(majority(&answers(&[None, None])).is_none());
        assert!(majority(&[]).is_none());
    }
}
