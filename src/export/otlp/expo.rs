//! Base-2 exponential histograms (OpenTelemetry data model, "Exponential
//! Histogram"): bucket `i` at scale `s` holds values in
//! `(2^(i·2^-s), 2^((i+1)·2^-s)]`. The scale starts at the finest and is
//! lowered until the values fit in `MAX_BUCKETS` buckets per sign, as the
//! SDKs do (160 is their default).

pub const MAX_BUCKETS: usize = 160;
pub const MAX_SCALE: i32 = 20;
pub const MIN_SCALE: i32 = -10;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Buckets {
    pub offset: i32,
    pub counts: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExpoHistogram {
    pub scale: i32,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub zero_count: u64,
    pub positive: Buckets,
    pub negative: Buckets,
}

/// The exponent and whether the value is an exact power of two.
fn exponent(v: f64) -> (i32, bool) {
    let bits = v.to_bits();
    let raw = ((bits >> 52) & 0x7ff) as i32;
    let mantissa = bits & ((1 << 52) - 1);
    if raw == 0 {
        // Subnormal: normalise by hand.
        let lead = mantissa.leading_zeros() as i32 - 12;
        let exp = -1022 - lead - 1;
        return (exp, mantissa.is_power_of_two());
    }
    (raw - 1023, mantissa == 0)
}

/// The bucket of `v > 0` at `scale` (the data model's reference mapping,
/// exact at powers of two).
pub fn index(v: f64, scale: i32) -> i32 {
    let (exp, power_of_two) = exponent(v);
    if scale <= 0 {
        let e = if power_of_two { exp - 1 } else { exp };
        return e >> -scale;
    }
    if power_of_two {
        return (exp << scale) - 1;
    }
    let factor = std::f64::consts::LOG2_E * f64::from(1u32 << scale);
    (v.ln() * factor).ceil() as i32 - 1
}

/// The smallest scale change that fits `[lo, hi]` into `max` buckets.
fn fits(lo: i32, hi: i32, scale: i32, max: usize) -> i32 {
    let mut s = scale;
    let (mut lo, mut hi) = (lo, hi);
    while s > MIN_SCALE && (i64::from(hi) - i64::from(lo) + 1) as usize > max {
        lo >>= 1;
        hi >>= 1;
        s -= 1;
    }
    s
}

fn buckets(values: impl Iterator<Item = f64> + Clone, scale: i32) -> Buckets {
    let mut it = values.clone().map(|v| index(v, scale));
    let Some(first) = it.next() else {
        return Buckets::default();
    };
    let (lo, hi) = it.fold((first, first), |(a, b), i| (a.min(i), b.max(i)));
    let mut counts = vec![0u64; (hi - lo + 1) as usize];
    for v in values {
        counts[(index(v, scale) - lo) as usize] += 1;
    }
    Buckets { offset: lo, counts }
}

/// The histogram of `values` (finite ones; others are skipped), `None`
/// when there are none.
pub fn histogram(values: &[f64], max_buckets: usize) -> Option<ExpoHistogram> {
    let finite = || values.iter().copied().filter(|v| v.is_finite());
    let count = finite().count() as u64;
    if count == 0 {
        return None;
    }
    let positive = || finite().filter(|v| *v > 0.0);
    let negative = || finite().filter(|v| *v < 0.0).map(f64::abs);
    let mut scale = MAX_SCALE;
    for side in [positive().collect::<Vec<_>>(), negative().collect()] {
        if let (Some(lo), Some(hi)) = (
            side.iter().copied().reduce(f64::min),
            side.iter().copied().reduce(f64::max),
        ) {
            scale = fits(
                index(lo, scale),
                index(hi, scale),
                scale,
                max_buckets.max(1),
            );
        }
    }
    Some(ExpoHistogram {
        scale,
        count,
        sum: finite().sum(),
        min: finite().reduce(f64::min).unwrap_or(0.0),
        max: finite().reduce(f64::max).unwrap_or(0.0),
        zero_count: finite().filter(|v| *v == 0.0).count() as u64,
        positive: buckets(positive(), scale),
        negative: buckets(negative(), scale),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Bucket `i`'s bounds at `scale`.
    fn bounds(i: i32, scale: i32) -> (f64, f64) {
        let base = 2f64.powf(2f64.powi(-scale));
        (base.powi(i), base.powi(i + 1))
    }

    #[test]
    fn powers_of_two_sit_at_the_top_of_their_bucket() {
        assert_eq!(index(1.0, 0), -1);
        assert_eq!(index(2.0, 0), 0);
        assert_eq!(index(4.0, 0), 1);
        assert_eq!(index(3.0, 0), 1);
        assert_eq!(index(4.0, 1), 3);
        assert_eq!(index(8.0, -1), 1, "base 4: (4, 16]");
        assert_eq!(index(4.0, -1), 0, "base 4: (1, 4]");
        assert_eq!(index(1024.0, 3), 79);
    }

    #[test]
    fn nanosecond_durations_fit_and_count() {
        let values = [0.0, 1.0e6, 2.5e6, 1.0e9, 1.2e10, 3.6e12];
        let h = histogram(&values, MAX_BUCKETS).unwrap();
        assert_eq!(h.count, 6);
        assert_eq!(h.zero_count, 1);
        assert_eq!(h.min, 0.0);
        assert_eq!(h.max, 3.6e12);
        assert_eq!(h.sum, values.iter().sum::<f64>());
        assert!(h.positive.counts.len() <= MAX_BUCKETS);
        assert_eq!(h.positive.counts.iter().sum::<u64>(), 5);
        assert!(h.negative.counts.is_empty());
        assert!(histogram(&[], MAX_BUCKETS).is_none());
        let one = histogram(&[5.0], MAX_BUCKETS).unwrap();
        assert_eq!(one.scale, MAX_SCALE, "one value needs no coarser scale");
    }

    proptest! {
        #[test]
        fn every_value_lands_in_a_bucket_that_holds_it(
            values in proptest::collection::vec(1e-3f64..1e13, 1..200),
            max in 2usize..200,
        ) {
            let h = histogram(&values, max).unwrap();
            prop_assert!(h.positive.counts.len() <= max);
            prop_assert_eq!(h.positive.counts.iter().sum::<u64>(), values.len() as u64);
            for v in &values {
                let i = index(*v, h.scale);
                let (lo, hi) = bounds(i, h.scale);
                // Within float error of the exact bounds.
                prop_assert!(*v > lo * (1.0 - 1e-9) && *v <= hi * (1.0 + 1e-9), "{} not in ({}, {}] at scale {}", v, lo, hi, h.scale);
                let slot = i - h.positive.offset;
                prop_assert!(slot >= 0 && (slot as usize) < h.positive.counts.len());
            }
            // The scale is the finest that fits: one finer would not.
            if h.scale < MAX_SCALE {
                let finer: std::collections::BTreeSet<i32> = values.iter().map(|v| index(*v, h.scale + 1)).collect();
                let span = finer.iter().next_back().unwrap() - finer.iter().next().unwrap() + 1;
                prop_assert!(span as usize > max);
            }
        }
    }
}
