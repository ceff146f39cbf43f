//! The queue from the streaming thread to the source pad task: audio, the frames it completes
//! and the events between them, in stream order, with the flow the task last met downstream.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use super::engine::SampleFormat;
use super::timeline::Frame;

/// What the streaming thread hands to the source pad task, in stream order.
pub enum Item {
    /// Upstream caps arrived: negotiate the output before anything that follows.
    Negotiate,
    /// A new stream starts after a flush: forget the audio of the old one.
    Restart,
    /// Audio, without its first `skip` samples.
    Audio {
        buffer: gst::Buffer,
        format: SampleFormat,
        skip: usize,
    },
    /// Samples of silence, for a gap.
    Silence(u64),
    /// All the audio is in: the last frames' features become final.
    EndOfAudio,
    Event(gst::Event),
    Frame(Frame),
}

/// What [`Queue::next`] found.
pub enum Next {
    Item(Item),
    /// The wait ran out with nothing queued.
    Timeout,
    /// Flushing, stopped, or (when only audio and frames were asked for) something else is next.
    Nothing,
}

struct Inner {
    items: VecDeque<Item>,
    /// Frames among the items, and how many may be queued before the streaming thread waits.
    frames: usize,
    max_frames: usize,
    flushing: bool,
    /// The last flow return downstream gave the task, handed back upstream by the chain.
    flow: Result<gst::FlowSuccess, gst::FlowError>,
    /// The next frame starts a new stretch (after start or flush).
    discont: bool,
}

pub struct Queue {
    inner: Mutex<Inner>,
    changed: Condvar,
}

impl Queue {
    /// A flushing queue of at most `max_frames` frames.
    pub fn new(max_frames: usize) -> Self {
        Queue {
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                frames: 0,
                max_frames,
                flushing: true,
                flow: Ok(gst::FlowSuccess::Ok),
                discont: true,
            }),
            changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops everything queued and starts over, flushing or not, with `items` queued.
    pub fn reset(&self, flushing: bool, items: impl IntoIterator<Item = Item>) {
        let mut inner = self.lock();
        inner.items.clear();
        inner.items.extend(items);
        inner.frames = 0;
        inner.flushing = flushing;
        inner.flow = Ok(gst::FlowSuccess::Ok);
        inner.discont = true;
        self.changed.notify_all();
    }

    pub fn set_max_frames(&self, max_frames: usize) {
        self.lock().max_frames = max_frames;
        self.changed.notify_all();
    }

    /// Frames queued, not yet taken by the task.
    pub fn frames(&self) -> usize {
        self.lock().frames
    }

    /// What the chain returns upstream.
    pub fn flow(&self) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.lock().flow
    }

    /// Stops the stream with `err`, which upstream gets from now on, unless flushing.
    pub fn stop(&self, err: gst::FlowError) {
        let mut inner = self.lock();
        if !inner.flushing {
            inner.flow = Err(err);
        }
        self.changed.notify_all();
    }

    /// Whether the next frame pushed starts a new stretch; it does not after this.
    pub fn take_discont(&self) -> bool {
        std::mem::take(&mut self.lock().discont)
    }

    /// Queues `item`; `false` while flushing.
    pub fn push(&self, item: Item) -> bool {
        let mut inner = self.lock();
        if inner.flushing {
            return false;
        }
        inner.items.push_back(item);
        self.changed.notify_all();
        true
    }

    /// Queues `items` without waiting, however many frames are queued: for a live stream, whose
    /// task keeps the queue short by not inferring late frames. Returns the flow for upstream.
    pub fn push_now(
        &self,
        items: impl IntoIterator<Item = Item>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut inner = self.lock();
        if inner.flushing {
            return Err(gst::FlowError::Flushing);
        }
        for item in items {
            if let Item::Frame(_) = item {
                inner.frames += 1;
            }
            inner.items.push_back(item);
        }
        self.changed.notify_all();
        inner.flow
    }

    /// Queues `frames`, waiting while the queue holds its most frames.
    pub fn push_frames(&self, frames: impl Iterator<Item = Frame>) -> Result<(), gst::FlowError> {
        let mut inner = self.lock();
        for frame in frames {
            while inner.frames >= inner.max_frames && !inner.flushing && inner.flow.is_ok() {
                inner = self
                    .changed
                    .wait(inner)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if inner.flushing {
                return Err(gst::FlowError::Flushing);
            }
            inner.flow?;
            inner.items.push_back(Item::Frame(frame));
            inner.frames += 1;
            self.changed.notify_all();
        }
        Ok(())
    }

    /// Takes the next item: any item when `any`, else only audio or a frame (what a batch may
    /// gather without reordering anything downstream sees). With nothing queued, waits until
    /// `until` (forever for `None` when `any`, not at all for `None` otherwise).
    pub fn next(&self, any: bool, until: Option<Instant>) -> Next {
        let mut inner = self.lock();
        loop {
            // After downstream failed a push, the task waits for a flush or a restart.
            if inner.flushing || inner.flow.is_err() {
                return Next::Nothing;
            }
            match inner.items.front() {
                Some(Item::Event(_) | Item::Negotiate) if !any => return Next::Nothing,
                Some(_) => {
                    let item = inner.items.pop_front().expect("an item");
                    if let Item::Frame(_) = item {
                        inner.frames -= 1;
                        self.changed.notify_all();
                    }
                    return Next::Item(item);
                }
                None => {
                    let wait = match until {
                        None if any => None,
                        None => return Next::Nothing,
                        Some(until) => match until.checked_duration_since(Instant::now()) {
                            Some(wait) if !wait.is_zero() => Some(wait),
                            _ => return Next::Timeout,
                        },
                    };
                    inner = match wait {
                        None => self
                            .changed
                            .wait(inner)
                            .unwrap_or_else(PoisonError::into_inner),
                        Some(wait) => {
                            let waited = self.changed.wait_timeout(inner, wait);
                            waited.unwrap_or_else(PoisonError::into_inner).0
                        }
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn frame(index: u64) -> Frame {
        Frame {
            index,
            template: 0,
            pts: 40_000_000 * index,
            duration: 40_000_000,
        }
    }

    fn index(next: Next) -> Option<u64> {
        match next {
            Next::Item(Item::Frame(frame)) => Some(frame.index),
            _ => None,
        }
    }

    #[test]
    fn items_come_out_in_order_and_a_batch_stops_at_an_event() {
        gst::init().unwrap();
        let queue = Queue::new(4);
        assert!(!queue.push(Item::Negotiate), "flushing until reset");
        queue.reset(false, [Item::Negotiate]);
        queue.push_frames((0..2).map(frame)).unwrap();
        queue.push(Item::Event(gst::event::Eos::new()));
        assert!(matches!(queue.next(false, None), Next::Nothing));
        assert!(matches!(
            queue.next(true, None),
            Next::Item(Item::Negotiate)
        ));
        assert_eq!(queue.frames(), 2);
        assert_eq!(index(queue.next(false, None)), Some(0));
        assert_eq!(index(queue.next(false, None)), Some(1));
        assert!(matches!(queue.next(false, None), Next::Nothing));
        assert!(matches!(queue.next(true, None), Next::Item(Item::Event(_))));
        let until = Instant::now() + Duration::from_millis(1);
        assert!(matches!(queue.next(true, Some(until)), Next::Timeout));
    }

    #[test]
    fn a_full_queue_holds_the_streaming_thread_until_the_task_takes_frames() {
        gst::init().unwrap();
        let queue = Arc::new(Queue::new(2));
        queue.reset(false, []);
        let pusher = {
            let queue = queue.clone();
            std::thread::spawn(move || queue.push_frames((0..5).map(frame)))
        };
        let taken: Vec<Option<u64>> = (0..5).map(|_| index(queue.next(true, None))).collect();
        assert_eq!(pusher.join().unwrap(), Ok(()));
        assert_eq!(taken, [Some(0), Some(1), Some(2), Some(3), Some(4)]);
        // Live streams queue whatever is queued already.
        assert_eq!(
            queue.push_now((0..5).map(frame).map(Item::Frame)),
            Ok(gst::FlowSuccess::Ok)
        );
        assert_eq!(queue.frames(), 5);
    }

    #[test]
    fn a_stop_or_a_flush_releases_the_waiting_streaming_thread() {
        gst::init().unwrap();
        for flushing in [false, true] {
            let queue = Arc::new(Queue::new(1));
            queue.reset(false, []);
            let pusher = {
                let queue = queue.clone();
                std::thread::spawn(move || queue.push_frames((0..3).map(frame)))
            };
            while queue.frames() == 0 {
                std::thread::yield_now();
            }
            if flushing {
                queue.reset(true, []);
            } else {
                queue.stop(gst::FlowError::NotLinked);
            }
            let expected = if flushing {
                gst::FlowError::Flushing
            } else {
                gst::FlowError::NotLinked
            };
            assert_eq!(pusher.join().unwrap(), Err(expected));
            assert!(matches!(queue.next(true, None), Next::Nothing));
        }
    }
}
