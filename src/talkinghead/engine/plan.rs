//! What each frame of a batch shows when a live stream cannot infer all it asks for: the frames
//! that are inferred spread evenly across the batch, and every other one holding the face of the
//! nearest frame inferred, so that the mouth keeps moving instead of whole batches falling back
//! to the template.

use crate::synth::{Face, FrameRequest};

/// How far (in frames) a face inferred in an earlier batch may be held, when a batch can infer
/// nothing at all: a second.
pub const HOLD_FRAMES: usize = 25;

/// Whether the `n`-th of `asked` frames is among `budget` of them spread evenly: the frames at
/// the middle of `budget` equal shares.
fn chosen(n: usize, asked: usize, budget: usize) -> bool {
    // Share j's middle frame is ⌊(2j + 1)·asked / (2·budget)⌋; frame n is one if some j hits it.
    let j = (2 * n * budget) / (2 * asked);
    (j..=j + 1).any(|j| j < budget && (2 * j + 1) * asked / (2 * budget) == n)
}

/// Infers only `budget` of the rows `requests` ask for (fewer than they ask), spread evenly.
/// Each other frame that asked for a row holds the nearest inferred frame's row; with none
/// inferred, it holds row 0 if `earlier` (the frame whose face an earlier batch inferred last)
/// is within [`HOLD_FRAMES`] of it, and shows its template otherwise.
pub fn thin(requests: &mut [FrameRequest], budget: usize, earlier: Option<usize>) {
    let asked = requests
        .iter()
        .filter(|request| request.face.inferred_row().is_some())
        .count();
    if budget >= asked {
        return;
    }
    let (mut n, mut row) = (0, 0);
    for request in requests.iter_mut() {
        let face = &mut request.face;
        let next = match *face {
            Face::Speech { .. } | Face::NewSilent { .. } => {
                n += 1;
                if chosen(n - 1, asked, budget) {
                    row += 1;
                    Some(row - 1)
                } else {
                    None
                }
            }
            _ => continue,
        };
        *face = match (next, *face) {
            (Some(row), Face::Speech { .. }) => Face::Speech { row },
            (Some(row), _) => Face::NewSilent { row },
            // Filled in below.
            (None, _) => Face::Held { row: usize::MAX },
        };
    }
    for at in 0..requests.len() {
        if requests[at].face != (Face::Held { row: usize::MAX }) {
            continue;
        }
        let frame = requests[at].frame;
        let nearest = requests
            .iter()
            .filter_map(|other| Some((other.frame.abs_diff(frame), other.face.inferred_row()?)))
            .min_by_key(|&(distance, _)| distance);
        requests[at].face = match (nearest, earlier) {
            (Some((_, row)), _) => Face::Held { row },
            (None, Some(earlier)) if frame.abs_diff(earlier) <= HOLD_FRAMES => {
                Face::Held { row: 0 }
            }
            (None, _) => Face::Template,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames 100, 101, … asking for rows in order, `silent` ones with the silent window, the
    /// `kept` ones showing their kept silent face.
    fn batch(faces: &str) -> Vec<FrameRequest> {
        let mut row = 0;
        faces
            .chars()
            .enumerate()
            .map(|(k, c)| {
                let face = match c {
                    's' | 'n' => {
                        row += 1;
                        if c == 's' {
                            Face::Speech { row: row - 1 }
                        } else {
                            Face::NewSilent { row: row - 1 }
                        }
                    }
                    'k' => Face::Silent,
                    _ => Face::Template,
                };
                FrameRequest {
                    frame: 100 + k,
                    template: k,
                    whole: true,
                    face,
                }
            })
            .collect()
    }

    /// Each frame's face as a short code: `S0` speech row 0, `N1` new silent row 1, `H0` held
    /// from row 0, `K` kept silent face, `T` template.
    fn faces(requests: &[FrameRequest]) -> Vec<String> {
        requests
            .iter()
            .map(|request| match request.face {
                Face::Speech { row } => format!("S{row}"),
                Face::NewSilent { row } => format!("N{row}"),
                Face::Held { row } => format!("H{row}"),
                Face::Silent => "K".into(),
                Face::Template => "T".into(),
            })
            .collect()
    }

    #[test]
    fn the_frames_inferred_are_spread_evenly() {
        for (budget, expected) in [
            (1, "H0 H0 H0 H0 S0 H0 H0 H0"),
            // A frame halfway between two inferred ones holds the earlier.
            (2, "H0 H0 S0 H0 H0 H1 S1 H1"),
            (4, "H0 S0 H0 S1 H1 S2 H2 S3"),
            (5, "S0 H0 S1 H1 S2 S3 H3 S4"),
            (7, "S0 S1 S2 H2 S3 S4 S5 S6"),
        ] {
            let mut requests = batch("ssssssss");
            thin(&mut requests, budget, None);
            assert_eq!(faces(&requests).join(" "), expected, "budget {budget}");
            let inferred = requests
                .iter()
                .filter(|r| r.face.inferred_row().is_some())
                .count();
            assert_eq!(inferred, budget);
        }
    }

    #[test]
    fn only_frames_that_ask_for_a_row_are_thinned() {
        // Kept silent faces cost nothing and stay; a new silent face is held like speech.
        let mut requests = batch("kksnssk");
        thin(&mut requests, 2, None);
        assert_eq!(faces(&requests), ["K", "K", "H0", "N0", "H0", "S1", "K"]);
    }

    #[test]
    fn a_budget_that_covers_the_batch_changes_nothing() {
        let mut requests = batch("ssnsk");
        let before = requests.clone();
        thin(&mut requests, 4, None);
        assert_eq!(requests, before);
        thin(&mut requests, 9, None);
        assert_eq!(requests, before);
    }

    #[test]
    fn with_nothing_inferred_an_earlier_face_is_held_while_it_is_near() {
        let mut requests = batch("ssss");
        thin(&mut requests, 0, Some(99));
        assert_eq!(faces(&requests), ["H0"; 4]);
        // Frame 127 is 25 frames after frame 102, 26 after 101.
        let mut requests = batch("ssss");
        thin(&mut requests, 0, Some(127));
        assert_eq!(faces(&requests), ["T", "T", "H0", "H0"]);
        let mut requests = batch("ssss");
        thin(&mut requests, 0, None);
        assert_eq!(faces(&requests), ["T"; 4]);
    }
}
