//! Two-dimensional toy data sets modelled on scikit-learn's `make_s_curve`,
//! `make_swiss_roll` and `make_moons`, plus eight Gaussians on a circle, projected
//! to the plane and shrunk to a common magnitude of about ±0.15 so one set of
//! diffusion hyper-parameters fits all of them. The moons (one class per moon) and
//! the Gaussians (one class per Gaussian) come with labels for class-conditional
//! training, and name the class a point is nearest to, for scoring guided samples.

use std::f64::consts::PI;
use std::fmt;
use std::str::FromStr;

use rand::seq::SliceRandom;
use rand::Rng;

/// The reference S-curve experiment feeds the network `s_curve[:, [0, 2]] / 10.0`;
/// every set is divided by the same factor so they share that magnitude.
const SHRINK: f64 = 10.0;
/// The Swiss roll's further shrink, see [`swiss_roll`].
const ROLL_EXTRA_SHRINK: f64 = 10.0;

/// One N(0, 1) draw by Box-Muller, so no distribution crate is needed.
fn standard_normal(rng: &mut impl Rng) -> f64 {
    // `random` is in [0, 1); flipping it keeps `ln` away from zero.
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
}

fn shrink_to_f32(x: f64, y: f64) -> [f32; 2] {
    [(x / SHRINK) as f32, (y / SHRINK) as f32]
}

/// `n` points of the S-curve seen from the side (sklearn's x and z axes),
/// with `noise` the standard deviation of the Gaussian jitter before shrinking.
pub fn s_curve(n: usize, noise: f64, rng: &mut impl Rng) -> Vec<[f32; 2]> {
    (0..n)
        .map(|_| {
            let t = 3.0 * PI * (rng.random::<f64>() - 0.5);
            // sklearn's y coordinate (the depth of the sheet) is projected away,
            // so it is neither drawn nor jittered.
            let x = t.sin() + noise * standard_normal(rng);
            let z = t.signum() * (t.cos() - 1.0) + noise * standard_normal(rng);
            shrink_to_f32(x, z)
        })
        .collect()
}

/// `n` points of the Swiss roll seen along its axis (sklearn's x and z axes),
/// with `noise` the standard deviation of the jitter before shrinking.
///
/// The roll's raw radius reaches about 14, ten times the S-curve's extent, so it
/// is divided by a further 10 (`ROLL_EXTRA_SHRINK`) to land at about ±0.14 like
/// the others: the sigmoid schedule's small betas only drown data of that size.
pub fn swiss_roll(n: usize, noise: f64, rng: &mut impl Rng) -> Vec<[f32; 2]> {
    (0..n)
        .map(|_| {
            let t = 1.5 * PI * (1.0 + 2.0 * rng.random::<f64>());
            let x = t * t.cos() + noise * standard_normal(rng);
            let z = t * t.sin() + noise * standard_normal(rng);
            shrink_to_f32(x / ROLL_EXTRA_SHRINK, z / ROLL_EXTRA_SHRINK)
        })
        .collect()
}

/// `n` points on two interleaving half circles, `n / 2` on the outer moon and
/// the rest on the inner one, in random order, with `noise` the jitter's
/// standard deviation in sklearn's units.
///
/// The raw moons keep their shape and size but are moved so that their joint
/// centre of mass, (0.5, 0.25), sits at the origin, and then divided by 10
/// like the other sets, which leaves them within about ±0.15.
pub fn moons(n: usize, noise: f64, rng: &mut impl Rng) -> Vec<[f32; 2]> {
    moons_labelled(n, noise, rng).0
}

/// `moons` with each point's moon: 0 the outer (upper) one, 1 the inner (lower) one, as
/// sklearn labels them; the points are those `moons` draws from the same generator.
pub fn moons_labelled(n: usize, noise: f64, rng: &mut impl Rng) -> (Vec<[f32; 2]>, Vec<u32>) {
    let outer_count = n / 2;
    let inner_count = n - outer_count;
    let mut raw: Vec<((f64, f64), u32)> = Vec::with_capacity(n);
    raw.extend(linspace_0_pi(outer_count).map(|a| ((a.cos(), a.sin()), 0)));
    raw.extend(linspace_0_pi(inner_count).map(|a| ((1.0 - a.cos(), 1.0 - a.sin() - 0.5), 1)));
    raw.shuffle(rng);
    raw.into_iter()
        .map(|((x, y), label)| {
            let x = x + noise * standard_normal(rng) - 0.5;
            let y = y + noise * standard_normal(rng) - 0.25;
            (shrink_to_f32(x, y), label)
        })
        .unzip()
}

/// The Gaussians' number and, in raw units (before the shrink), their circle's radius and
/// their standard deviation (a tenth of the radius).
pub const N_GAUSSIANS: usize = 8;
const GAUSSIANS_RADIUS: f64 = 1.0;
const GAUSSIANS_STD: f64 = 0.1;

/// The mean of Gaussian k, at angle 2 pi k / 8 on the circle, shrunk like the points.
pub fn gaussian_mean(k: usize) -> [f64; 2] {
    let angle = 2.0 * PI * k as f64 / N_GAUSSIANS as f64;
    [
        GAUSSIANS_RADIUS * angle.cos() / SHRINK,
        GAUSSIANS_RADIUS * angle.sin() / SHRINK,
    ]
}

/// `n` points of eight Gaussians centred on a circle around the origin, each point's label
/// its Gaussian k (drawn uniformly), at angle 2 pi k / 8, with a standard deviation of a tenth
/// of the radius.
pub fn gaussians(n: usize, rng: &mut impl Rng) -> (Vec<[f32; 2]>, Vec<u32>) {
    (0..n)
        .map(|_| {
            let k = rng.random_range(0..N_GAUSSIANS);
            let angle = 2.0 * PI * k as f64 / N_GAUSSIANS as f64;
            let x = GAUSSIANS_RADIUS * angle.cos() + GAUSSIANS_STD * standard_normal(rng);
            let y = GAUSSIANS_RADIUS * angle.sin() + GAUSSIANS_STD * standard_normal(rng);
            (shrink_to_f32(x, y), k as u32)
        })
        .unzip()
}

/// Distance from `p` to the arc of the circle (centre, radius 1) between angles `from` and
/// `from + pi`: to the circle where p's angle lies on the arc, else to the nearer end.
fn distance_to_half_circle(p: (f64, f64), centre: (f64, f64), from: f64) -> f64 {
    let (dx, dy) = (p.0 - centre.0, p.1 - centre.1);
    let within = (dy.atan2(dx) - from).rem_euclid(2.0 * PI) <= PI;
    if within {
        (dx.hypot(dy) - 1.0).abs()
    } else {
        [from, from + PI]
            .iter()
            .map(|a| (dx - a.cos()).hypot(dy - a.sin()))
            .fold(f64::INFINITY, f64::min)
    }
}

/// numpy's `linspace(0, pi, count)`, including its single-point case `[0]`.
fn linspace_0_pi(count: usize) -> impl Iterator<Item = f64> {
    let step = if count > 1 {
        PI / (count - 1) as f64
    } else {
        0.0
    };
    (0..count).map(move |i| i as f64 * step)
}

/// Points with each point's class (None for the unlabelled sets).
pub type Labelled = (Vec<[f32; 2]>, Option<Vec<u32>>);

/// The toy data sets selectable by name, each with a fixed noise level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToyData {
    SCurve,
    SwissRoll,
    Moons,
    Gaussians,
}

impl ToyData {
    pub const ALL: [ToyData; 4] = [
        ToyData::SCurve,
        ToyData::SwissRoll,
        ToyData::Moons,
        ToyData::Gaussians,
    ];

    /// `n` fresh points; the noise levels are sklearn-style values in the
    /// sets' raw units (before the division by 10).
    pub fn sample(&self, n: usize, rng: &mut impl Rng) -> Vec<[f32; 2]> {
        self.sample_labelled(n, rng).0
    }

    /// `sample`, with each point's class for the labelled sets (moons, gaussians).
    pub fn sample_labelled(&self, n: usize, rng: &mut impl Rng) -> Labelled {
        match self {
            ToyData::SCurve => (s_curve(n, 0.1, rng), None),
            ToyData::SwissRoll => (swiss_roll(n, 0.5, rng), None),
            ToyData::Moons => {
                let (points, labels) = moons_labelled(n, 0.05, rng);
                (points, Some(labels))
            }
            ToyData::Gaussians => {
                let (points, labels) = gaussians(n, rng);
                (points, Some(labels))
            }
        }
    }

    /// The class names of a labelled set, label i = names[i]; None for the unlabelled ones.
    pub fn classes(&self) -> Option<Vec<String>> {
        match self {
            ToyData::SCurve | ToyData::SwissRoll => None,
            ToyData::Moons => Some(vec!["upper".into(), "lower".into()]),
            ToyData::Gaussians => Some((0..N_GAUSSIANS).map(|k| k.to_string()).collect()),
        }
    }

    /// The class whose mode `point` is nearest to: the nearest Gaussian mean, or the moon whose
    /// (noise-free) arc is nearer. None for the unlabelled sets.
    pub fn nearest_class(&self, point: [f32; 2]) -> Option<u32> {
        let (x, y) = (point[0] as f64, point[1] as f64);
        match self {
            ToyData::SCurve | ToyData::SwissRoll => None,
            ToyData::Gaussians => (0..N_GAUSSIANS)
                .map(|k| {
                    let [mx, my] = gaussian_mean(k);
                    (k as u32, (x - mx).hypot(y - my))
                })
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(k, _)| k),
            ToyData::Moons => {
                let raw = (x * SHRINK + 0.5, y * SHRINK + 0.25);
                let upper = distance_to_half_circle(raw, (0.0, 0.0), 0.0);
                let lower = distance_to_half_circle(raw, (1.0, 0.5), PI);
                Some(if upper <= lower { 0 } else { 1 })
            }
        }
    }

    /// The name accepted by `FromStr`, suitable for file names and CLI flags.
    pub fn name(&self) -> &'static str {
        match self {
            ToyData::SCurve => "s-curve",
            ToyData::SwissRoll => "swiss-roll",
            ToyData::Moons => "moons",
            ToyData::Gaussians => "gaussians",
        }
    }
}

impl fmt::Display for ToyData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ToyData {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ToyData::ALL
            .into_iter()
            .find(|data| data.name() == s)
            .ok_or_else(|| {
                let valid: Vec<&str> = ToyData::ALL.iter().map(|data| data.name()).collect();
                format!(
                    "unknown data set '{s}'; expected one of: {}",
                    valid.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn mean_and_std(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
        let count = values.clone().count() as f64;
        let mean = values.clone().sum::<f64>() / count;
        let variance = values.map(|v| (v - mean).powi(2)).sum::<f64>() / count;
        (mean, variance.sqrt())
    }

    #[test]
    fn standard_normal_has_unit_moments() {
        let mut rng = StdRng::seed_from_u64(1);
        let draws: Vec<f64> = (0..100_000).map(|_| standard_normal(&mut rng)).collect();
        let (mean, std) = mean_and_std(draws.iter().copied());
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((std - 1.0).abs() < 0.02, "std {std}");
    }

    #[test]
    fn s_curve_moments_match_the_analytic_values() {
        let mut rng = StdRng::seed_from_u64(2);
        let points = s_curve(20_000, 0.1, &mut rng);
        let (x_mean, x_std) = mean_and_std(points.iter().map(|p| p[0] as f64));
        let (z_mean, z_std) = mean_and_std(points.iter().map(|p| p[1] as f64));
        // Var(sin t) = 1/2 and Var(sign(t)(cos t - 1)) ≈ 1.924 for t uniform on
        // [-3π/2, 3π/2]; add 0.1² of noise and divide the std by 10.
        assert!(x_mean.abs() < 0.003, "x mean {x_mean}");
        assert!(z_mean.abs() < 0.005, "z mean {z_mean}");
        assert!((x_std - 0.0714).abs() < 0.002, "x std {x_std}");
        assert!((z_std - 0.1391).abs() < 0.003, "z std {z_std}");
        let x_max = points.iter().map(|p| p[0].abs()).fold(0.0, f32::max);
        let z_max = points.iter().map(|p| p[1].abs()).fold(0.0, f32::max);
        assert!(x_max > 0.1 && x_max < 0.15, "x max {x_max}");
        assert!(z_max > 0.19 && z_max < 0.25, "z max {z_max}");
    }

    #[test]
    fn noiseless_swiss_roll_lies_on_the_spiral() {
        let mut rng = StdRng::seed_from_u64(3);
        for [x, z] in swiss_roll(500, 0.0, &mut rng) {
            let radius = SHRINK * ROLL_EXTRA_SHRINK * (x as f64).hypot(z as f64);
            assert!((1.5 * PI - 1e-3..=4.5 * PI + 1e-3).contains(&radius));
            // On the spiral r = t, so the angle of the point is r modulo 2π.
            let angle = (z as f64).atan2(x as f64);
            let wrapped = (radius - angle).rem_euclid(2.0 * PI);
            let off_spiral = wrapped.min(2.0 * PI - wrapped);
            assert!(off_spiral < 1e-3, "point ({x}, {z}) is off the spiral");
        }
    }

    /// Distance from a raw-unit point to the nearest point of an arc, found by
    /// dense sampling, which is plenty for a tolerance check.
    fn distance_to_arc(point: (f64, f64), arc: impl Fn(f64) -> (f64, f64)) -> f64 {
        (0..=2000)
            .map(|i| {
                let (ax, ay) = arc(PI * i as f64 / 2000.0);
                (point.0 - ax).hypot(point.1 - ay)
            })
            .fold(f64::INFINITY, f64::min)
    }

    #[test]
    fn moons_form_two_equal_clusters_around_the_origin() {
        let mut rng = StdRng::seed_from_u64(4);
        let points = moons(301, 0.05, &mut rng);
        assert_eq!(points.len(), 301);
        let mut outer = 0;
        let mut inner = 0;
        for &[x, y] in &points {
            let raw = (x as f64 * 10.0 + 0.5, y as f64 * 10.0 + 0.25);
            let to_outer = distance_to_arc(raw, |a| (a.cos(), a.sin()));
            let to_inner = distance_to_arc(raw, |a| (1.0 - a.cos(), 0.5 - a.sin()));
            // Five standard deviations of the 2-D jitter; the arcs are much further apart.
            if to_outer < 0.25 && to_inner > 0.25 {
                outer += 1;
            } else if to_inner < 0.25 && to_outer > 0.25 {
                inner += 1;
            } else {
                panic!("point {raw:?} belongs to neither moon");
            }
        }
        assert_eq!((outer, inner), (150, 151));
        let (x_mean, _) = mean_and_std(points.iter().map(|p| p[0] as f64));
        let (y_mean, _) = mean_and_std(points.iter().map(|p| p[1] as f64));
        assert!(x_mean.abs() < 0.005 && y_mean.abs() < 0.005);
    }

    #[test]
    fn labelled_sets_name_the_class_each_point_came_from() {
        let mut rng = StdRng::seed_from_u64(9);
        let (points, labels) = moons_labelled(400, 0.05, &mut rng);
        let again = moons(400, 0.05, &mut StdRng::seed_from_u64(9));
        assert_eq!(points, again, "moons_labelled draws moons' points");
        assert_eq!(labels.iter().filter(|&&y| y == 0).count(), 200);
        for (p, y) in points.iter().zip(&labels) {
            assert_eq!(ToyData::Moons.nearest_class(*p), Some(*y), "moon of {p:?}");
        }
        let (points, labels) = gaussians(4000, &mut rng);
        let mut counts = [0usize; N_GAUSSIANS];
        let mut right = 0;
        for (p, &y) in points.iter().zip(&labels) {
            counts[y as usize] += 1;
            right += (ToyData::Gaussians.nearest_class(*p) == Some(y)) as usize;
            let [mx, my] = gaussian_mean(y as usize);
            // Six standard deviations (0.01 after the shrink) in each coordinate.
            assert!((p[0] as f64 - mx).abs() < 0.06 && (p[1] as f64 - my).abs() < 0.06);
        }
        // Neighbouring means are 0.077 apart, 3.8 standard deviations each side of the middle.
        assert!(right >= 3990, "{right} of 4000 nearest their own mode");
        assert!(
            counts.iter().all(|&c| (400..600).contains(&c)),
            "{counts:?}"
        );
        let [mx, my] = gaussian_mean(2);
        assert!(
            mx.abs() < 1e-12 && (my - 0.1).abs() < 1e-12,
            "mode 2 at 90 degrees"
        );
    }

    #[test]
    fn moons_are_shuffled() {
        let mut rng = StdRng::seed_from_u64(5);
        let points = moons(200, 0.0, &mut rng);
        // Unshuffled, the whole first half would be the outer moon (left, y > -0.025).
        let first_half_inner = points[..100].iter().filter(|p| p[1] < -0.03).count();
        assert!(
            first_half_inner > 10,
            "{first_half_inner} inner points in the first half"
        );
    }

    #[test]
    fn tiny_sizes_do_not_panic() {
        let mut rng = StdRng::seed_from_u64(6);
        for data in ToyData::ALL {
            assert!(data.sample(0, &mut rng).is_empty());
            assert_eq!(data.sample(1, &mut rng).len(), 1);
            assert_eq!(data.sample(3, &mut rng).len(), 3);
        }
    }

    #[test]
    fn names_round_trip_and_unknown_names_list_the_options() {
        for data in ToyData::ALL {
            assert_eq!(data.name().parse::<ToyData>(), Ok(data));
            assert_eq!(data.to_string(), data.name());
        }
        let error = "spiral".parse::<ToyData>().unwrap_err();
        assert!(error.contains("spiral"));
        assert!(
            error.contains("s-curve")
                && error.contains("swiss-roll")
                && error.contains("moons")
                && error.contains("gaussians")
        );
    }

    #[test]
    fn same_seed_gives_same_points_and_other_seeds_differ() {
        for data in ToyData::ALL {
            let first = data.sample(64, &mut StdRng::seed_from_u64(7));
            let again = data.sample(64, &mut StdRng::seed_from_u64(7));
            let other = data.sample(64, &mut StdRng::seed_from_u64(8));
            assert_eq!(first, again);
            assert_ne!(first, other);
        }
    }
}
