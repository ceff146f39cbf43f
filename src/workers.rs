//! A fixed set of threads that run the tasks of one job at a time, the calling thread taking
//! part: the per-frame image work of a batch, without a thread spawn or an allocation per batch.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};

/// The job being run, with its lifetime erased: [`WorkerPool::run`] does not return before every
/// task that started has finished, so the job outlives every use.
#[derive(Clone, Copy)]
struct Job(*const (dyn Fn(usize) + Sync));

// SAFETY: the pointee is `Sync`, and is only called while `run` keeps it alive.
unsafe impl Send for Job {}

struct State {
    job: Option<Job>,
    tasks: usize,
    next_task: usize,
    unfinished: usize,
    /// The first panic of a task of this job, raised again by `run`.
    panic: Option<Box<dyn Any + Send>>,
    shutdown: bool,
}

struct Shared {
    state: Mutex<State>,
    work: Condvar,
    done: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the next task of the current job, if one is left.
    fn take(state: &mut State) -> Option<(Job, usize)> {
        let job = state.job?;
        (state.next_task < state.tasks).then(|| {
            state.next_task += 1;
            (job, state.next_task - 1)
        })
    }

    fn finish<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        result: std::thread::Result<()>,
    ) -> MutexGuard<'a, State> {
        if let Err(panic) = result {
            state.panic.get_or_insert(panic);
        }
        state.unfinished -= 1;
        if state.unfinished == 0 {
            self.done.notify_all();
        }
        state
    }
}

fn call(job: Job, task: usize) -> std::thread::Result<()> {
    // SAFETY: see `Job`.
    let job = unsafe { &*job.0 };
    panic::catch_unwind(AssertUnwindSafe(|| job(task)))
}

pub struct WorkerPool {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl WorkerPool {
    /// A pool running jobs on `threads` threads in all: the caller of [`run`](Self::run) and
    /// `threads − 1` of its own.
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                job: None,
                tasks: 0,
                next_task: 0,
                unfinished: 0,
                panic: None,
                shutdown: false,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
        });
        let mut pool = WorkerPool {
            shared,
            threads: Vec::new(),
        };
        for n in 1..threads.max(1) {
            let shared = pool.shared.clone();
            let thread = thread::Builder::new()
                .name(format!("talkinghead-{n}"))
                .spawn(move || worker(&shared))?;
            pool.threads.push(thread);
        }
        Ok(pool)
    }

    /// Threads that run tasks, the caller's included.
    #[cfg(test)]
    pub fn threads(&self) -> usize {
        self.threads.len() + 1
    }

    /// Calls `job(0)` … `job(tasks − 1)`, spread over the pool's threads and the caller's, and
    /// returns once all have returned. A panic in a task is raised again here.
    pub fn run(&self, tasks: usize, job: &(dyn Fn(usize) + Sync)) {
        if tasks == 0 {
            return;
        }
        // SAFETY: only the lifetime is erased; the job is cleared below before `run` returns,
        // after every task that took it has finished.
        let erased: &'static (dyn Fn(usize) + Sync) = unsafe { std::mem::transmute(job) };
        let mut state = self.shared.lock();
        *state = State {
            job: Some(Job(erased)),
            tasks,
            next_task: 0,
            unfinished: tasks,
            panic: None,
            shutdown: false,
        };
        self.shared.work.notify_all();
        while let Some((job, task)) = Shared::take(&mut state) {
            drop(state);
            let result = call(job, task);
            state = self.shared.finish(self.shared.lock(), result);
        }
        while state.unfinished > 0 {
            state = self
                .shared
                .done
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.job = None;
        let panic = state.panic.take();
        drop(state);
        // A task's panic goes on in this thread with its own message, for the element to report.
        if let Some(panic) = panic {
            panic::resume_unwind(panic);
        }
    }
}

fn worker(shared: &Shared) {
    let mut state = shared.lock();
    loop {
        if state.shutdown {
            return;
        }
        match Shared::take(&mut state) {
            Some((job, task)) => {
                drop(state);
                let result = call(job, task);
                state = shared.finish(shared.lock(), result);
            }
            None => {
                state = shared
                    .work
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner)
            }
        }
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.work.notify_all();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A slice that tasks of one job write at disjoint indices.
pub struct Disjoint<'a, T> {
    data: *mut T,
    len: usize,
    _borrow: std::marker::PhantomData<&'a mut [T]>,
}

// SAFETY: tasks only reach elements through `chunk`, whose callers promise disjoint chunks.
unsafe impl<T: Send> Sync for Disjoint<'_, T> {}

impl<'a, T> Disjoint<'a, T> {
    pub fn new(slice: &'a mut [T]) -> Self {
        Disjoint {
            data: slice.as_mut_ptr(),
            len: slice.len(),
            _borrow: std::marker::PhantomData,
        }
    }

    /// Chunk `index` of `chunk_len` elements.
    ///
    /// # Safety
    ///
    /// No two live chunks may overlap: each index is taken by one task at a time.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn chunk(&self, index: usize, chunk_len: usize) -> &mut [T] {
        assert!((index + 1) * chunk_len <= self.len, "chunk out of range");
        // SAFETY: in bounds (checked), disjoint (the caller's promise).
        unsafe { std::slice::from_raw_parts_mut(self.data.add(index * chunk_len), chunk_len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_task_runs_once_per_job() {
        let pool = WorkerPool::new(3).unwrap();
        assert_eq!(pool.threads(), 3);
        for tasks in [0, 1, 2, 3, 7, 64] {
            let counts: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
            pool.run(tasks, &|task| {
                counts[task].fetch_add(1, Ordering::Relaxed);
            });
            assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1));
        }
    }

    #[test]
    fn tasks_write_disjoint_chunks() {
        let pool = WorkerPool::new(2).unwrap();
        let mut data = vec![0usize; 40];
        let chunks = Disjoint::new(&mut data);
        // SAFETY: task k takes chunk k only.
        pool.run(10, &|task| unsafe { chunks.chunk(task, 4) }.fill(task));
        assert_eq!(data, (0..40).map(|i| i / 4).collect::<Vec<_>>());
    }

    #[test]
    #[should_panic(expected = "again")]
    fn a_panicking_task_is_reported_and_the_pool_survives() {
        let pool = WorkerPool::new(2).unwrap();
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            pool.run(4, &|task| assert_ne!(task, 2, "task 2 fails"))
        }));
        assert!(result.is_err());
        let ran = AtomicUsize::new(0);
        pool.run(4, &|_| {
            ran.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(ran.load(Ordering::Relaxed), 4);
        pool.run(1, &|_| panic!("again"));
    }
}
