//! Sample-quality figures on feature vectors, in f64 on the host (d = 128 and a few thousand
//! vectors: the covariances and eigen decompositions take milliseconds, far below what the
//! features cost on the GPU):
//! - FID (Heusel et al. 2017): |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)).
//! - KID (Binkowski et al. 2018): the unbiased MMD^2 with the kernel (x.y / d + 1)^3, averaged
//!   over subsets, with the spread of the subset estimates.
//! - Precision and recall (Kynkaanniemi et al. 2019) with k-nearest-neighbour balls, k = 3.
//! - Nearest-neighbour distances to a reference set (the memorisation check), on all cores.
//!
//! Features are flat f32 rows of `dim` values.

/// The mean and the (n - 1)-normalised covariance of n rows of `dim` features.
pub fn mean_cov(features: &[f32], dim: usize) -> (Vec<f64>, Vec<f64>) {
    let n = features.len() / dim;
    let mut mean = vec![0.0; dim];
    for row in features.chunks(dim) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += v as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let mut cov = vec![0.0; dim * dim];
    let mut centred = vec![0.0; dim];
    for row in features.chunks(dim) {
        for ((c, &v), m) in centred.iter_mut().zip(row).zip(&mean) {
            *c = v as f64 - m;
        }
        for i in 0..dim {
            let ci = centred[i];
            // Upper triangle only; mirrored below.
            for j in i..dim {
                cov[i * dim + j] += ci * centred[j];
            }
        }
    }
    let denom = (n as f64 - 1.0).max(1.0);
    for i in 0..dim {
        for j in i..dim {
            let v = cov[i * dim + j] / denom;
            cov[i * dim + j] = v;
            cov[j * dim + i] = v;
        }
    }
    (mean, cov)
}

/// Eigenvalues and eigenvectors (columns of the second, row-major n x n) of a symmetric matrix,
/// by cyclic Jacobi rotations: slower than LAPACK's divide and conquer but exact to rounding,
/// a page of code, and for d = 128 a few tens of milliseconds.
pub fn symmetric_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0.0; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let scale: f64 = a
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum::<f64>()
            .sqrt();
        if off <= 1e-15 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() <= 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

/// The symmetric PSD square root of a covariance (negative rounding-level eigenvalues are
/// clipped to zero).
fn sqrt_psd(a: &[f64], n: usize) -> Vec<f64> {
    let (values, vectors) = symmetric_eigen(a, n);
    let roots: Vec<f64> = values.iter().map(|&l| l.max(0.0).sqrt()).collect();
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            out[i * n + j] = (0..n)
                .map(|k| vectors[i * n + k] * roots[k] * vectors[j * n + k])
                .sum();
        }
    }
    out
}

fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            for j in 0..n {
                out[i * n + j] += aik * b[k * n + j];
            }
        }
    }
    out
}

/// tr((S1 S2)^(1/2)) as tr((A S2 A)^(1/2)) with A = S1^(1/2): the same eigenvalues, but of a
/// symmetric PSD matrix, so a symmetric eigen solver applies and no complex roots appear
/// (scipy's sqrtm of the non-symmetric S1 S2 needs a Schur form and returns tiny imaginary
/// parts that FID code then discards).
pub fn trace_sqrt_product(s1: &[f64], s2: &[f64], n: usize) -> f64 {
    let a = sqrt_psd(s1, n);
    let m = matmul(&matmul(&a, s2, n), &a, n);
    // Symmetrise away rounding before the eigen solver, which reads both triangles.
    let m: Vec<f64> = (0..n * n)
        .map(|k| 0.5 * (m[k] + m[(k % n) * n + k / n]))
        .collect();
    symmetric_eigen(&m, n)
        .0
        .iter()
        .map(|&l| l.max(0.0).sqrt())
        .sum()
}

/// The Frechet distance between Gaussians (mu1, S1) and (mu2, S2).
pub fn frechet_distance(mu1: &[f64], s1: &[f64], mu2: &[f64], s2: &[f64]) -> f64 {
    let n = mu1.len();
    let mean_term: f64 = mu1.iter().zip(mu2).map(|(a, b)| (a - b) * (a - b)).sum();
    let trace = |s: &[f64]| (0..n).map(|i| s[i * n + i]).sum::<f64>();
    let fid = mean_term + trace(s1) + trace(s2) - 2.0 * trace_sqrt_product(s1, s2, n);
    // Rounding can take a distance of 0 a hair below it.
    fid.max(0.0)
}

/// FID between two sets of feature rows.
pub fn fid(a: &[f32], b: &[f32], dim: usize) -> f64 {
    let (m1, s1) = mean_cov(a, dim);
    let (m2, s2) = mean_cov(b, dim);
    frechet_distance(&m1, &s1, &m2, &s2)
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    // Eight f32 lanes the compiler vectorises, summed in f64 at the end.
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().map(|&v| v as f64).sum::<f64>() + tail as f64
}

/// KID as the mean over subsets and the standard deviation of the subset estimates (the
/// protocol of Binkowski et al. and torch-fidelity's kid_std): `n_subsets` subsets of
/// `subset_size` rows of each set, drawn with the counter-based RNG from `seed`.
#[derive(Clone, Copy, Debug)]
pub struct Kid {
    pub mean: f64,
    pub std: f64,
}

pub fn kid(
    a: &[f32],
    b: &[f32],
    dim: usize,
    n_subsets: usize,
    subset_size: usize,
    seed: u32,
) -> Kid {
    let (na, nb) = (a.len() / dim, b.len() / dim);
    let m = subset_size.min(na).min(nb);
    assert!(m >= 2, "KID needs at least 2 rows of each set");
    let kernel = |x: &[f32], y: &[f32]| (dot(x, y) / dim as f64 + 1.0).powi(3);
    fn row(set: &[f32], i: usize, dim: usize) -> &[f32] {
        &set[i * dim..(i + 1) * dim]
    }
    let draw = |stream: u32, s: usize, n: usize| -> Vec<usize> {
        // A partial Fisher-Yates shuffle: m distinct rows.
        let mut idx: Vec<usize> = (0..n).collect();
        for j in 0..m {
            let r = crate::rng::random_bits(seed, stream, (s * m + j) as u32)[0] as usize;
            let k = j + r % (n - j);
            idx.swap(j, k);
        }
        idx.truncate(m);
        idx
    };
    let estimate = |s: usize| {
        let (ia, ib) = (draw(0x41d, s, na), draw(0x41e, s, nb));
        let (mut kxx, mut kyy, mut kxy) = (0.0, 0.0, 0.0);
        for i in 0..m {
            let (ai, bi) = (row(a, ia[i], dim), row(b, ib[i], dim));
            // The within-set kernels are symmetric: each pair once, counted twice.
            for j in i + 1..m {
                kxx += 2.0 * kernel(ai, row(a, ia[j], dim));
                kyy += 2.0 * kernel(bi, row(b, ib[j], dim));
            }
            kxy += ib.iter().map(|&j| kernel(ai, row(b, j, dim))).sum::<f64>();
        }
        let mf = m as f64;
        (kxx + kyy) / (mf * (mf - 1.0)) - 2.0 * kxy / (mf * mf)
    };
    // Subsets on all cores: 50 subsets of 1,000 rows are ~13 G multiply-adds.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut estimates = vec![0.0; n_subsets];
    let per = n_subsets.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        for (t, chunk) in estimates.chunks_mut(per).enumerate() {
            let estimate = &estimate;
            scope.spawn(move || {
                for (o, e) in chunk.iter_mut().enumerate() {
                    *e = estimate(t * per + o);
                }
            });
        }
    });
    let k = estimates.len() as f64;
    let mean = estimates.iter().sum::<f64>() / k;
    let var = estimates.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (k - 1.0).max(1.0);
    Kid {
        mean,
        std: var.sqrt(),
    }
}

/// For every row of `queries`, its Euclidean distance to the nearest row of `reference`,
/// skipping the same index when `exclude_self` (a set against itself). Split over all cores:
/// 2,000 queries against 60,000 rows of 128 features is 15 G multiply-adds, a few seconds.
pub fn nearest_distances(
    queries: &[f32],
    reference: &[f32],
    dim: usize,
    k: usize,
    exclude_self: bool,
) -> Vec<f64> {
    let nq = queries.len() / dim;
    let norms: Vec<f64> = reference.chunks(dim).map(|r| dot(r, r)).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = nq.div_ceil(threads.max(1)).max(1);
    let mut out = vec![0.0; nq];
    std::thread::scope(|scope| {
        for (t, chunk) in out.chunks_mut(per).enumerate() {
            let norms = &norms;
            scope.spawn(move || {
                // The k smallest squared distances, kept sorted (k is 1 or 3).
                let mut best = vec![f64::INFINITY; k];
                for (o, slot) in chunk.iter_mut().enumerate() {
                    let qi = t * per + o;
                    let q = &queries[qi * dim..(qi + 1) * dim];
                    let qq = dot(q, q);
                    best.iter_mut().for_each(|b| *b = f64::INFINITY);
                    for (ri, r) in reference.chunks(dim).enumerate() {
                        if exclude_self && ri == qi {
                            continue;
                        }
                        let d2 = (qq + norms[ri] - 2.0 * dot(q, r)).max(0.0);
                        if d2 < best[k - 1] {
                            let mut pos = k - 1;
                            while pos > 0 && best[pos - 1] > d2 {
                                best[pos] = best[pos - 1];
                                pos -= 1;
                            }
                            best[pos] = d2;
                        }
                    }
                    *slot = best[k - 1].sqrt();
                }
            });
        }
    });
    out
}

/// The fraction of `queries` inside at least one ball around a row of `reference` whose radius
/// is that row's distance to its k-th nearest neighbour within `reference`.
fn coverage(queries: &[f32], reference: &[f32], radii: &[f64], dim: usize) -> f64 {
    let nq = queries.len() / dim;
    let inside = queries
        .chunks(dim)
        .filter(|q| {
            reference.chunks(dim).zip(radii).any(|(r, &radius)| {
                let d2: f64 = q.iter().zip(r).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
                d2 <= radius * radius
            })
        })
        .count();
    inside as f64 / nq.max(1) as f64
}

/// Improved precision and recall (Kynkaanniemi et al. 2019): precision is the fraction of
/// generated rows inside the real manifold (the union of k-NN balls around the real rows),
/// recall the fraction of real rows inside the generated manifold.
pub fn precision_recall(real: &[f32], generated: &[f32], dim: usize, k: usize) -> (f64, f64) {
    let real_radii = nearest_distances(real, real, dim, k, true);
    let generated_radii = nearest_distances(generated, generated, dim, k, true);
    (
        coverage(generated, real, &real_radii, dim),
        coverage(real, generated, &generated_radii, dim),
    )
}

/// The median of finite values.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}
