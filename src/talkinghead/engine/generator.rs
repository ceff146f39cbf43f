//! The thread that runs the generator for a batch while the source pad task prepares the next
//! batch and composes the one before.

use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::EngineError;
use crate::fault;
use crate::synth::Tensors;
use crate::talkinghead::resources::Models;

/// Batches submitted and not yet taken back, at most.
const IN_FLIGHT: usize = 2;

struct Job {
    tensors: Tensors,
    frames: usize,
}

/// A batch the generator has run: its tensors, and the time the run took or why it failed.
pub struct Done {
    pub tensors: Tensors,
    pub result: Result<Duration, EngineError>,
}

pub struct GeneratorThread {
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Done>,
    /// A batch taken from `done` by [`GeneratorThread::done`], not yet waited for.
    ready: Option<Done>,
    thread: Option<JoinHandle<()>>,
}

impl GeneratorThread {
    pub fn new(models: Arc<Models>) -> Result<Self, EngineError> {
        // Bounded queues are preallocated: nothing is allocated per batch. At most two batches
        // are in flight, one running and one queued.
        let (jobs, job_queue) = mpsc::sync_channel::<Job>(IN_FLIGHT);
        let (done_queue, done) = mpsc::sync_channel(IN_FLIGHT);
        let thread = std::thread::Builder::new()
            .name("talkinghead-generator".into())
            .spawn(move || {
                for Job {
                    mut tensors,
                    frames,
                } in job_queue
                {
                    let started = Instant::now();
                    let (images, audio, output) = tensors.split(frames);
                    let run = panic::catch_unwind(AssertUnwindSafe(|| {
                        models
                            .generator
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .run(images, audio, output)
                    }));
                    let result = match run {
                        Ok(Ok(())) => Ok(started.elapsed()),
                        Ok(Err(err)) => Err(EngineError::Inference(err)),
                        Err(panic) => Err(EngineError::GeneratorPanicked(fault::panic_message(
                            &*panic,
                        ))),
                    };
                    if done_queue.send(Done { tensors, result }).is_err() {
                        break;
                    }
                }
            })
            .map_err(EngineError::Thread)?;
        Ok(GeneratorThread {
            jobs: Some(jobs),
            done,
            ready: None,
            thread: Some(thread),
        })
    }

    /// Starts the generator on the first `frames` frames of `tensors`.
    pub fn submit(&self, tensors: Tensors, frames: usize) {
        let jobs = self.jobs.as_ref().expect("the thread runs until dropped");
        // The thread only stops once `jobs` is dropped.
        let _ = jobs.send(Job { tensors, frames });
    }

    /// Whether the oldest batch submitted and not yet taken is done.
    pub fn done(&mut self) -> bool {
        if self.ready.is_none() {
            self.ready = self.done.try_recv().ok();
        }
        self.ready.is_some()
    }

    /// Waits for the oldest batch submitted and not yet taken.
    pub fn wait(&mut self) -> Done {
        self.ready.take().unwrap_or_else(|| {
            self.done
                .recv()
                .expect("the generator thread answers every job")
        })
    }
}

impl Drop for GeneratorThread {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
