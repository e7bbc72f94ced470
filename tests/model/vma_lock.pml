/*
 * vma_lock.pml - a Promela model of vmspace's per-VMA lock protocol
 * (src/mm/mmap_lock.cpp), checked exhaustively with spin.  docs/locking.md,
 * section "The model (tests/model)", says what it covers and what it
 * abstracts away; run_model.sh builds and runs one variant.
 *
 * One address A, a small pool of VMA objects, one writer (the mmap_lock
 * write side serialises writers, so one writer process running SESSIONS
 * write sessions in a row covers every interleaving that matters) and
 * READERS readers, each doing FAULTS calls of lock_vma_under_rcu(A) and, if
 * that fails, the mmap_lock fallback.  Defaults: 2 sessions, 2 readers,
 * 2 faults each, a 2-bit sequence counter.
 *
 * Every local is set back to 0 after its last use (added = 0, snap = 0,
 * ...): spin stores locals in the state, and a stale value would only
 * split one state into several equal ones.
 *
 * Switches (spin -D...):
 *   DESIGN_REFCOUNT   per_vma_refcount (Linux 6.15+); default per_vma_rwsem
 *   NO_RECHECK        negative control: vma_start_read skips step 3, the
 *                     re-check of vm_lock_seq against mm_lock_seq
 *   NO_DETACH         negative control: removed VMAs are not marked detached
 *   NO_WAIT           negative control: vma_start_write does not wait for the
 *                     VMA's readers to leave
 *   NO_DETACH_WAIT    extra control (refcount): vma_mark_detached does not
 *                     wait out transient readers
 *   NO_RANGE_CHECK    extra control: lock_vma_under_rcu does not re-check
 *                     that A is still inside the locked VMA
 *   BLOCKING_MMAP     extra control: a reader holding a VMA read lock waits
 *                     for the mmap_lock (read) instead of try-locking it
 *   LATE_SNAPSHOT     extra control (refcount): the waiting writer reads the
 *                     event count after re-checking vm_refcnt, not before
 *   QUICK_CHECK_ANY   over-approximation: step 1 of vma_start_read (the
 *                     unordered quick check) answers nondeterministically,
 *                     which covers every value a relaxed load could return
 *   SESSIONS=n, READERS=n, FAULTS=n, SEQ_BITS=n   the bounds (below)
 *
 * SAFETY PROPERTIES (assertions on ghost state; g_* variables are ghosts:
 * they record what the code means, the protocol never reads them)
 *   P1  no reader holds a validated VMA read lock while the writer has that
 *       VMA write-locked (from vma_start_write() returning until
 *       vma_end_write_all(): the window in which the writer changes or
 *       detaches it).  Checked where either side enters the window, with
 *       the same expression, so the pair proves the invariant.
 *   P2  lock_vma_under_rcu never returns a detached (removed) VMA ...
 *   P3  ... and the VMA it returns is the one the tree maps A to.
 * DEADLOCK: every process terminates; pan reports any state in which a
 * process is blocked for good as an "invalid end state".
 *
 * SEQUENCE WRAP-AROUND
 *
 * mm_lock_seq and vm_lock_seq are counted modulo SEQ_MOD = 2^SEQ_BITS
 * (default 2 bits: 0..3), and mm_lock_seq starts at SEQ_MOD - 2, so the
 * default run of 2 sessions uses mm_lock_seq 3, wraps through 0 and uses 1.
 * Only equality is ever tested, so arithmetic modulo SEQ_MOD is the whole
 * effect of a narrower counter.
 *
 * Why wrap-around gives no false answer within the default bound: every
 * vm_lock_seq is either the "unlocked" value or the odd mm_lock_seq of a
 * session in which that VMA was write-locked (VMAs start "unlocked").  Two
 * sessions fewer than SEQ_MOD/2 apart have different odd values modulo
 * SEQ_MOD, so with SESSIONS <= SEQ_MOD/2 a stale vm_lock_seq never equals
 * the current session's value: "write-locked" (vm_lock_seq == mm_lock_seq)
 * is exact on both sides.  A reader comparing against an even (idle) mm_lock_seq can
 * never see equality either.
 *
 * Beyond the bound the equality is NOT exact, and the model shows where it
 * matters (run with -DSESSIONS=3, i.e. SESSIONS > SEQ_MOD/2): a VMA
 * write-locked in session k and not touched again has vm_lock_seq equal to
 * mm_lock_seq again in session k + SEQ_MOD/2.  On the reader side that is a
 * harmless false "locked" (the reader falls back).  On the writer side,
 * vma_start_write()'s "already write-locked in this session" early return
 * takes the stale value for its own lock and skips excluding the readers:
 * a reader that holds the VMA keeps using it while the writer changes it
 * (P1 fails).  In the C++ code the counters are 64-bit, so this needs
 * 2^63 write sessions while one VMA stays untouched - unreachable in
 * practice, but the "does not depend on that" claim in mmap_lock.cpp's
 * WHY SEQUENCE OVERFLOW IS HARMLESS covers only the reader side.  The
 * C++ "unlocked" value kVmaUnlockedSeq = UINT64_MAX is odd and is reached
 * by mm_lock_seq in session 2^63 in the same way; the model gives
 * "unlocked" a value outside 0..SEQ_MOD-1 (UNLOCKED) because within the
 * bound mm_lock_seq cannot reach the top value of a 64-bit counter.
 *
 * MEMORY MODEL: Promela is sequentially consistent.  Each atomic access of
 * the C++ code is one step (a CAS loop that retries is one conditional
 * read-modify-write); relaxed/acquire/release are not distinguished.  The
 * re-check (step 3 of vma_start_read) is its own step, and NO_RECHECK
 * removes it.
 */

#ifndef SEQ_BITS
#define SEQ_BITS 2
#endif
#define SEQ_MOD (1 << SEQ_BITS)
#define SEQ_START (SEQ_MOD - 2)   /* the first session wraps the counter */
#define UNLOCKED 255              /* vm_lock_seq "not write-locked" (see above) */

#ifndef SESSIONS
#define SESSIONS 2
#endif
#ifndef READERS
#define READERS 2
#endif
#ifndef FAULTS
#define FAULTS 2
#endif

#define NV (1 + SESSIONS)   /* VMA objects: the initial one + one new per session */
#define NONE 255            /* no VMA (tree lookup miss, or "no VMA returned") */

/* vma_start_read results (VmaReadResult) */
#define LOCKED 0
#define WRITE_LOCKED 1
#define DETACHED 2

/* vm_refcnt: the table in src/mm/mm_types.h with kVmaLockOffset scaled
 * down; it only has to exceed 1 + READERS. */
#define LOCK_OFFSET 8
#define REF_LIMIT (LOCK_OFFSET - 1)

/* ---- the mm -------------------------------------------------------- */
byte mm_lock_seq = SEQ_START;   /* odd while mmap_lock is write-held */
bit mmap_w;                     /* mmap_lock: write-held */
byte mmap_r;                    /* mmap_lock: readers */
byte tree = 0;                  /* mm_mt: the VMA containing A, or NONE */
byte next_vma = 1;              /* next unused VMA object */
#ifdef DESIGN_REFCOUNT
byte writer_wait;               /* mm->vma_writer_wait, the event count */
bit writer_asleep;              /* the writer is in futex_wait on it */
#endif

/* ---- the VMAs ------------------------------------------------------ */
byte vm_lock_seq[NV];
bit in_range[NV];               /* vm_start <= A < vm_end */
#ifdef DESIGN_REFCOUNT
byte vm_refcnt[NV];
#else
bit detached[NV];
byte sem_readers[NV];           /* vm_lock: readers holding it */
byte sem_writer[NV];            /* vm_lock: 0 free, 1 writer queued, 2 writer holds */
#endif

/* ---- ghosts -------------------------------------------------------- */
byte g_readers[NV];             /* readers holding a validated read lock */
bit g_wlocked[NV];              /* write-locked in the current session */
bit g_removed[NV];              /* removed from the tree (to be detached) */

#define P1(v) assert(!(g_readers[v] > 0 && g_wlocked[v]))

/* ==== writer side ================================================== */

#ifdef DESIGN_REFCOUNT
/* refcnt_wait_for(): until vm_refcnt == target.  Snapshot the event count,
 * re-check, sleep only if the count is unchanged (futex_wait compares and
 * sleeps atomically).  The 128 spins before sleeping only add steps that
 * change nothing; they are left out. */
inline refcnt_wait_for(v, target) {
  do
  :: skip ->
#ifndef LATE_SNAPSHOT
     snap = writer_wait;
     if
     :: vm_refcnt[v] == target -> snap = 0; break
     :: else -> skip
     fi;
#else
     if
     :: vm_refcnt[v] == target -> break
     :: else -> skip
     fi;
     snap = writer_wait;
#endif
     atomic {              /* futex_wait(&vma_writer_wait, snap) */
       if
       :: writer_wait == snap -> writer_asleep = 1
       :: else -> skip     /* EAGAIN: the count moved, look again */
       fi;
       snap = 0            /* dead */
     };
     !writer_asleep        /* woken by a leaving reader (or never slept) */
  od
}

/* refcnt_add_lock_offset(): add the offset unless the count is 0 */
inline refcnt_add_lock_offset(v) {
  d_step {
    if
    :: vm_refcnt[v] == 0 -> added = 0
    :: else -> vm_refcnt[v] = vm_refcnt[v] + LOCK_OFFSET; added = 1
    fi
  }
}
#endif

/* vma_start_write(v): requires mmap W (the writer's session). */
inline vma_start_write(v) {
  if
  :: vm_lock_seq[v] == mm_lock_seq -> skip   /* already write-locked: return */
  :: else ->
#ifdef DESIGN_REFCOUNT
     refcnt_add_lock_offset(v);
     if
     :: added ->
        added = 0;
#ifndef NO_WAIT
        refcnt_wait_for(v, LOCK_OFFSET + 1);   /* only the attach reference left */
#endif
        vm_lock_seq[v] = mm_lock_seq;
        vm_refcnt[v] = vm_refcnt[v] - LOCK_OFFSET   /* fetch_sub, release */
     :: else ->
        vm_lock_seq[v] = mm_lock_seq              /* detached: no readers */
     fi
#else
     sem_writer[v] = 1;                           /* down_write: queued ... */
#ifndef NO_WAIT
     atomic { sem_readers[v] == 0 -> sem_writer[v] = 2 };  /* ... owns it */
#else
     sem_writer[v] = 2;                           /* ... takes it, readers or not */
#endif
     vm_lock_seq[v] = mm_lock_seq;
     sem_writer[v] = 0                            /* up_write, release */
#endif
  fi;
  d_step { g_wlocked[v] = 1; P1(v) }
}

/* vma_mark_attached(v), on a VMA nobody else can see yet */
inline vma_mark_attached(v) {
#ifdef DESIGN_REFCOUNT
  vm_refcnt[v] = 1
#else
  detached[v] = 0
#endif
}

/* vma_mark_detached(v): requires vma W */
inline vma_mark_detached(v) {
  P1(v);
#ifndef NO_DETACH
#ifdef DESIGN_REFCOUNT
  d_step { vm_refcnt[v] = vm_refcnt[v] - 1; left = vm_refcnt[v] };  /* drop the attach ref */
  if
  :: left == 0 -> skip
  :: else ->
     left = 0;
#ifndef NO_DETACH_WAIT
     refcnt_add_lock_offset(v);
     if
     :: added ->
        added = 0;
        refcnt_wait_for(v, LOCK_OFFSET);          /* transient readers leave */
        vm_refcnt[v] = vm_refcnt[v] - LOCK_OFFSET
     :: else -> skip                              /* they already left */
     fi
#else
     skip
#endif
  fi
#else
  detached[v] = 1
#endif
#endif
}

/* A new VMA (vm_area_alloc + vma_start_write + vma_mark_attached), then
 * stored in the tree. */
inline new_vma(n) {
  n = next_vma;
  next_vma++;
  vma_start_write(n);
  vma_mark_attached(n)
}

proctype writer() {
  byte s, v, n, added, left, snap;
  do
  :: s < SESSIONS ->
     atomic { mmap_w == 0 && mmap_r == 0 -> mmap_w = 1 };   /* mmap_write_lock */
     mm_lock_seq = (mm_lock_seq + 1) % SEQ_MOD;               /* write_begin: odd */
     v = tree;                                                /* find_vma under mmap W */
     if
     :: v != NONE ->                     /* change it in place (mprotect, anon_vma) */
        vma_start_write(v)
     :: v != NONE ->                     /* shrink it away from A, A unmapped */
        vma_start_write(v);
        in_range[v] = 0;
        tree = NONE
     :: v != NONE ->                     /* replace it (split/merge: new VMA at A) */
        vma_start_write(v);
        new_vma(n);
        d_step { tree = n; g_removed[v] = 1; n = 0 };   /* one store publishes it */
        vma_mark_detached(v)                     /* vma_complete */
     :: v != NONE ->                     /* unmap it */
        vma_start_write(v);
        d_step { tree = NONE; g_removed[v] = 1 };
        vma_mark_detached(v)
     :: v == NONE ->                     /* map a new VMA at A */
        new_vma(n);
        d_step { tree = n; n = 0 }
     :: skip                             /* a session that changes other VMAs */
     fi;
     d_step {                            /* vma_end_write_all: write_end, even */
       mm_lock_seq = (mm_lock_seq + 1) % SEQ_MOD;
       v = 0;
       do
       :: v < NV -> g_wlocked[v] = 0; v++
       :: else -> break
       od
     };
     mmap_w = 0;                         /* mmap_lock unlock */
     s++
  :: else -> break
  od
}

/* ==== reader side ================================================== */

#ifdef DESIGN_REFCOUNT
/* vma_refcount_put(): the VMA is not touched after the decrement */
inline vma_refcount_put(v) {
  d_step { vm_refcnt[v] = vm_refcnt[v] - 1; now = (vm_refcnt[v] >= LOCK_OFFSET) };
  if
  :: now ->                              /* a writer waits: bump and wake */
     d_step { writer_wait++; now = 0 };
     writer_asleep = 0
  :: else -> skip
  fi
}
#endif

/* vma_start_read(v) -> r.  The caller is in an RCU read-side section that
 * found v in the tree, so v is readable whatever happens to it. */
inline vma_start_read(v) {
#ifndef QUICK_CHECK_ANY
  /* 1. quick unordered check: two separate loads (the second one and
   *    the comparison are one step) */
  seqv = vm_lock_seq[v];
  d_step {
    if
    :: seqv == mm_lock_seq -> r = WRITE_LOCKED
    :: else -> r = LOCKED                /* so far */
    fi;
    seqv = 0
  };
  if
  :: r == WRITE_LOCKED -> skip
  :: else ->
#else
  /* 1. the quick check may answer anything (relaxed loads of any age) */
  if
  :: r = WRITE_LOCKED
  :: skip ->
#endif
#ifdef DESIGN_REFCOUNT
     /* 2. increment unless detached (0) or readers excluded (>= limit) */
     d_step {
       if
       :: vm_refcnt[v] == 0 -> r = DETACHED
       :: vm_refcnt[v] >= REF_LIMIT -> r = WRITE_LOCKED
       :: else -> vm_refcnt[v] = vm_refcnt[v] + 1; r = LOCKED
       fi
     };
#ifndef NO_RECHECK
     /* 3. re-check, acquire */
     if
     :: r == LOCKED && vm_lock_seq[v] == mm_lock_seq ->
        r = WRITE_LOCKED;
        vma_refcount_put(v)
     :: else -> skip
     fi
#endif
#else
     /* 2. try_lock_shared: fails if a writer holds or waits */
     d_step {
       if
       :: sem_writer[v] == 0 -> sem_readers[v]++; r = LOCKED
       :: else -> r = WRITE_LOCKED
       fi
     };
#ifndef NO_RECHECK
     /* 3. re-check, acquire */
     if
     :: r == LOCKED && vm_lock_seq[v] == mm_lock_seq ->
        r = WRITE_LOCKED;
        sem_readers[v]--
     :: else -> skip
     fi;
#endif
     if
     :: r == LOCKED && detached[v] ->
        r = DETACHED;
        sem_readers[v]--
     :: else -> skip
     fi
#endif
  fi;
  if
  :: r == LOCKED -> d_step { g_readers[v]++; P1(v) }
  :: else -> skip
  fi
}

inline vma_end_read(v) {
  g_readers[v]--;
#ifdef DESIGN_REFCOUNT
  vma_refcount_put(v)
#else
  sem_readers[v]--
#endif
}

/* lock_vma_under_rcu(A) -> got (NONE: fall back to the mmap_lock) */
inline lock_vma_under_rcu() {
  got = NONE;
  do
  :: v = tree;                           /* RCU lookup */
     if
     :: v == NONE -> break
     :: else -> skip
     fi;
     vma_start_read(v);
     if
     :: r == DETACHED -> skip            /* vma_lock_miss: walk again */
     :: r == WRITE_LOCKED -> break       /* vma_lock_abort */
     :: r == LOCKED ->
#ifndef NO_RANGE_CHECK
        if
        :: !in_range[v] -> vma_end_read(v); break   /* vma_lock_abort */
        :: else -> skip
        fi;
#endif
        got = v;
        break
     fi
  od
}

proctype reader() {
  byte k, v, got, r, seqv;
  bit now;
  bit ok;
  do
  :: k < FAULTS ->
     lock_vma_under_rcu();
     if
     :: got != NONE ->
        d_step {
          assert(!g_removed[got]);        /* P2: never a detached VMA */
          assert(tree == got)             /* P3: the VMA that maps A */
        };
        /* the fault runs under the VMA read lock; it may need the
         * mmap_lock (anon_vma_prepare) and may then only try it */
        if
        :: skip
        :: skip ->                        /* (an option opening with the
                                           * if below would join this if,
                                           * and its else would never run) */
#ifndef BLOCKING_MMAP
           atomic {                       /* mmap_read_trylock */
             if
             :: mmap_w == 0 -> mmap_r++; ok = 1
             :: else -> ok = 0
             fi
           };
#else
           atomic { mmap_w == 0 -> mmap_r++; ok = 1 };   /* mmap_read_lock */
#endif
           if
           :: ok -> mmap_r--
           :: else -> skip
           fi
        fi;
        vma_end_read(got)
     :: else ->                           /* fallback: the fault under mmap R */
        atomic { mmap_w == 0 -> mmap_r++ };
        v = tree;
        if
        :: v != NONE -> assert(!g_wlocked[v])
        :: else -> skip
        fi;
        mmap_r--
     fi;
     d_step { k++; v = 0; got = 0; r = 0; ok = 0 }   /* dead locals cleared */
  :: else -> break
  od
}

init {
  byte i;
  atomic {
    i = 0;
    do
    :: i < NV ->
       vm_lock_seq[i] = UNLOCKED;
       in_range[i] = 1;
#ifndef DESIGN_REFCOUNT
       detached[i] = 1;
#endif
       i++
    :: else -> break
    od;
    /* VMA 0 maps A from the start */
#ifdef DESIGN_REFCOUNT
    vm_refcnt[0] = 1;
#else
    detached[0] = 0;
#endif
    run writer();
    i = 0;
    do
    :: i < READERS -> run reader(); i++
    :: else -> break
    od
  }
}
