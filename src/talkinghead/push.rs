//! The thread that pushes rendered frames and events downstream.
//!
//! The source pad task renders; this thread pushes what it rendered, in order. A downstream that
//! holds a push (a sink waiting for a frame's time on the clock) then holds this thread, not the
//! rendering of the next batch, so a live pipeline needs no `queue` after the element.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// What goes downstream, in stream order.
pub enum Outgoing {
    Buffer(gst::Buffer),
    Event(gst::Event),
}

struct Queue {
    items: VecDeque<Outgoing>,
    /// Items beyond which `send` waits.
    limit: usize,
    /// The thread took an item and has not finished pushing it.
    busy: bool,
    flushing: bool,
    /// Downstream returned this for a push; nothing more goes until the next flush or start.
    failed: Option<gst::FlowError>,
    stopping: bool,
}

impl Queue {
    /// Whether items can go: not while flushing, nor after a failed push.
    fn open(&self) -> Result<(), gst::FlowError> {
        if self.flushing {
            return Err(gst::FlowError::Flushing);
        }
        self.failed.map_or(Ok(()), Err)
    }
}

struct Shared {
    queue: Mutex<Queue>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn wait<'a>(&self, queue: MutexGuard<'a, Queue>) -> MutexGuard<'a, Queue> {
        self.changed
            .wait(queue)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub struct Pusher {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Pusher {
    pub fn new(limit: usize) -> Self {
        Pusher {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue {
                    items: VecDeque::with_capacity(limit),
                    limit,
                    busy: false,
                    flushing: true,
                    failed: None,
                    stopping: false,
                }),
                changed: Condvar::new(),
            }),
            thread: Mutex::new(None),
        }
    }

    /// Lets pushing start, first starting the thread, which lives until the pusher is dropped
    /// and hands each item to `push`. `push` returns the flow downstream returned; after an error
    /// other than one caused by a flush, nothing more is pushed until the next flush or start.
    pub fn start(
        &self,
        name: &str,
        push: impl Fn(Outgoing) -> Result<(), gst::FlowError> + Send + 'static,
    ) -> std::io::Result<()> {
        let mut thread = self.thread.lock().unwrap();
        if thread.is_none() {
            let shared = self.shared.clone();
            *thread = Some(
                std::thread::Builder::new()
                    .name(name.into())
                    .spawn(move || run(&shared, push))?,
            );
        }
        let mut queue = self.shared.lock();
        queue.items.clear();
        queue.flushing = false;
        queue.failed = None;
        self.shared.changed.notify_all();
        Ok(())
    }

    /// Drops what is queued and waits for a push in progress to return; nothing is pushed until
    /// the next start.
    pub fn stop(&self) {
        self.flush_start();
        let mut queue = self.shared.lock();
        while queue.busy {
            queue = self.shared.wait(queue);
        }
    }

    pub fn set_limit(&self, limit: usize) {
        self.shared.lock().limit = limit.max(1);
        self.shared.changed.notify_all();
    }

    /// Queues `item`, waiting while the queue is full. Fails while flushing, and with
    /// downstream's error once a push failed.
    pub fn send(&self, item: Outgoing) -> Result<(), gst::FlowError> {
        let mut queue = self.shared.lock();
        loop {
            queue.open()?;
            if queue.items.len() < queue.limit {
                break;
            }
            queue = self.shared.wait(queue);
        }
        queue.items.push_back(item);
        self.shared.changed.notify_all();
        Ok(())
    }

    /// Waits until everything queued has been pushed.
    pub fn drain(&self) -> Result<(), gst::FlowError> {
        let mut queue = self.shared.lock();
        loop {
            queue.open()?;
            if queue.items.is_empty() && !queue.busy {
                return Ok(());
            }
            queue = self.shared.wait(queue);
        }
    }

    /// Downstream's error for a push, if one failed.
    pub fn failed(&self) -> Option<gst::FlowError> {
        self.shared.lock().failed
    }

    /// Drops what is queued; nothing is pushed until `flush_stop`.
    pub fn flush_start(&self) {
        let mut queue = self.shared.lock();
        queue.flushing = true;
        queue.items.clear();
        self.shared.changed.notify_all();
    }

    /// Waits for a push in progress to return, then lets pushing start again.
    pub fn flush_stop(&self) {
        let mut queue = self.shared.lock();
        while queue.busy {
            queue = self.shared.wait(queue);
        }
        queue.flushing = false;
        queue.failed = None;
        self.shared.changed.notify_all();
    }
}

impl Drop for Pusher {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.get_mut().unwrap().take() {
            // The element may be dropped on this thread, by its last reference.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

fn run(shared: &Shared, push: impl Fn(Outgoing) -> Result<(), gst::FlowError>) {
    loop {
        let item = {
            let mut queue = shared.lock();
            loop {
                if queue.stopping {
                    return;
                }
                if !queue.flushing && queue.failed.is_none() {
                    if let Some(item) = queue.items.pop_front() {
                        queue.busy = true;
                        shared.changed.notify_all();
                        break item;
                    }
                }
                queue = shared.wait(queue);
            }
        };
        // A panic in `push` must not leave `busy` set, which a flush would wait on for ever.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| push(item)))
            .unwrap_or(Err(gst::FlowError::Error));
        let mut queue = shared.lock();
        queue.busy = false;
        if let Err(err) = result {
            if !queue.flushing {
                queue.failed = Some(err);
                queue.items.clear();
            }
        }
        shared.changed.notify_all();
    }
}
