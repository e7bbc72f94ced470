/*
 * range_writers.pml - a Promela model of the planned per_vma_range lock mode
 * (docs/range-writers.md): layout changes that lock only an address range
 * (plus their neighbours) run concurrently; faults keep the per-VMA read
 * protocol.  Checked exhaustively with spin by run_model.sh (--model
 * range_writers.pml); the conventions are vma_lock.pml's, whose per-VMA
 * protocol this model reuses in its rwsem form (vma_lock.pml checks that
 * protocol, both forms, in depth; here it only has to be present).
 *
 * THE ADDRESS LINE: P = 6 pages, 0..5.  A VMA is a run of pages with one
 * "flag" value (1 or 2: its vm_flags, abstracted); adjacent VMAs with the
 * same flag would have been merged (Linux's vma_merge), so a normalised
 * layout never has two.  Initially
 *      page:   0  1  2  3  4  5
 *      VMA:    v0 v0 -  -  v1 v1       v0 = [0,2) flag 1, v1 = [4,6) flag 1
 * The tree (mm_mt) is vma_of[]: the VMA each page maps to, or NONE.  A
 * writer publishes its change with one d_step (the tree's one release store
 * of the root), so a lookup (one load) sees the tree before or after.
 *
 * THE WRITERS (W = 2 or 3, one operation each, chosen nondeterministically):
 *   writer 0:  mprotect [0,1) -> 2   (splits v0)
 *              mmap fixed [2,3) 1    (merges with v0)
 *   writer 1:  mmap fixed [2,4) 1    (merges with v0 and v1: v0 grows to
 *                                     [0,6), v1 is removed)
 *              mmap fixed [3,4) 1    (merges with v1)
 *              mmap 1 page, flag 2, no hint (placement: the lowest free
 *                                     page of a snapshot, then lock, then
 *                                     check the page is still free)
 *   writer 2:  mprotect [5,6) -> 2   (splits v1)           (W = 3 only)
 * Pairs of these are disjoint (writer 0's mprotect and writer 1's [3,4):
 * locked ranges [0,2) and [2,6)), adjacent across a merge (writer 0's
 * [2,3) and writer 1's [3,4)), or overlapping.
 *
 * Each writer does what docs/range-writers.md, "The writer's protocol",
 * says:
 *   1. under RCU, from ONE snapshot of the tree (tree entries only, no VMA
 *      fields), the locked range L = the hull of N = [s-1, e+1) (one page
 *      of padding on each side, clipped to the line) and of every VMA
 *      intersecting N (their whole extents);
 *   2. range_write_lock(L): FIFO interval lock, below;
 *   3. re-validate: recompute the hull from the tree now; it must lie
 *      inside L (and, for a placement, the chosen page must still be
 *      free), else unlock and start again;
 *   4. plan the change from the tree and the VMAs' fields (stable inside
 *      L): the new layout of the hull K, reusing a VMA object of the same
 *      flag for each new run (Linux keeps the VMA it expands or splits) and
 *      taking new objects for the rest; the VMAs whose extent changes and
 *      those removed are the ones to write-lock;
 *   5. vma_start_write each of them (stamp own sequence S), stamp and
 *      attach the new ones;
 *   6. publish (one store), then detach the removed VMAs;
 *   7. release its own VMA write locks, by its own list (store UNLOCKED),
 *      then 8. release the range.
 *
 * THE READERS (READERS = 0 or 1, FAULTS faults each at any page): the
 * per-VMA protocol of mmap_lock.cpp (rwsem form) with the range mode's
 * "write-locked" test vm_lock_seq != UNLOCKED; on failure the fallback takes
 * the range lock for READ over the whole line (the mode's mmap_read_lock).
 *
 * THE RANGE LOCK: requests 0..W-1 are the writers', W.. the readers'
 * fallbacks.  A request records, when it is queued, the set of requests
 * already queued (rl_ahead); it is granted when none of those conflicts
 * with it (overlaps, and not both reads).  A release removes itself from
 * every other request's set.  This is the implementation's "blocking
 * count" (docs/range-writers.md): a request waits only for conflicting
 * requests queued before it, hence FIFO among conflicting requests.
 * Stealing: a writer that conflicts with no held request may instead go
 * ahead of every queued one (each conflicting one adds it to its set),
 * at every queueing (the implementation's kHandoffAfter bound is a
 * matter of time, not modelled: unbounded stealing covers it).  "Held"
 * is the implementation's "claimed": the grant step is the owner's, so
 * a request whose set became free but that has not taken that step is
 * exactly a grant not yet claimed, which a stealer takes back.
 *
 * SAFETY PROPERTIES (assertions on ghost state; g_* are ghosts):
 *   P0  two granted range requests never conflict (the lock itself)
 *   P1  no reader holds a validated VMA read lock (or, in the fallback, reads
 *       a VMA under the range read lock) while a writer has that VMA
 *       write-locked                                             (g_readers,
 *                                                                 g_owner)
 *   P2  lock_vma_under_rcu never returns a detached VMA         (g_removed)
 *   P3  the VMA it returns is the one the tree maps the address to, and
 *       has the flag the address has                      (vma_of, g_st)
 *   P4  lemma: a writer write-locks only VMAs that lie inside its locked
 *       range (docs/range-writers.md, invariant R2)               (g_inside)
 *   P5  two writers never have the same VMA write-locked          (g_owner)
 *   P6  a placement maps only a page that is free when it publishes
 *                                                                 (g_free)
 *   P7  the final layout is consistent: tree, VMA objects and the ghost
 *       page contents agree, the layout is normalised (no two adjacent
 *       VMAs with one flag), no lock is left                  (g_layout_ok)
 * DEADLOCK: every process terminates (an invalid end state otherwise).
 * Starvation-freedom is argued in docs/range-writers.md (FIFO); a safety
 * search cannot show it, but P0 and the absence of deadlock here cover the
 * lock's grant rule.
 *
 * The ghost page contents g_st[] are the operations' meaning: each writer's
 * publish step sets g_st[s..e) to its flag (0 = unmapped).  Writers never
 * read them: the layout they publish is computed from the tree and the
 * VMAs, so a writer that planned from a stale view publishes a layout that
 * disagrees with g_st (P7) or P5 catches it earlier.
 *
 * Switches (spin -D...):
 *   W=n, READERS=n, FAULTS=n   the bounds (defaults 2, 1, 1)
 *   NO_NEIGHBOURS    negative control: a writer locks exactly [s, e), not the
 *                    neighbours it may merge with or split (it still merges
 *                    and splits them; there is nothing to re-validate)
 *   NO_REVALIDATE    negative control: no re-validation after locking (needs
 *                    W=3: two writers with stale ranges)
 *   NO_GAP_RECHECK   negative control: a placement does not re-check that
 *                    its page is still free after locking
 *   SHARED_SEQ       negative control: one shared sequence as in the other
 *                    modes (mm_lock_seq: the first writer makes it odd, any
 *                    writer that ends makes it even), so a writer that ends
 *                    releases the VMA locks of another writer still working
 *                    (P7 does not count the stamps such a scheme leaves
 *                    behind, so that the counterexample is the reader's)
 *   LATE_UNLOCK      negative control: a writer releases the range before
 *                    its VMA write locks, so its "unlock" store may land on a
 *                    VMA the next writer of that range has write-locked
 *   NO_STEAL         the lock without stealing (strict FIFO)
 *   STEAL_PAST_HELD  negative control: a writer steals even past a request
 *                    that is held (P0 fails)
 *   SHOW_CONCURRENCY vacuity check: asserts that writers 0 and 1 never hold
 *                    the range lock at the same time; the counterexample
 *                    shows that disjoint writers do run concurrently
 * The controls switch P4 off: it would fail at once and only says that the
 * design's invariant is broken; the counterexample must show the harm.
 *
 * MEMORY MODEL and RCU as in vma_lock.pml: sequentially consistent steps;
 * VMA objects are never freed or reused (what an RCU reader can observe).
 */

#ifndef W
#define W 2
#endif
#ifndef READERS
#define READERS 1
#endif
#ifndef FAULTS
#define FAULTS 1
#endif

#define P 6               /* pages of the address line */
#define NV 8              /* VMA objects: v0, v1 + at most 2 new per writer */
#define NONE 255
#define UNLOCKED 255      /* vm_lock_seq: not write-locked (kVmaUnlockedSeq) */
#define NREQ 4            /* range-lock request slots (W + READERS <= 4) */

#if defined(NO_NEIGHBOURS) || defined(NO_REVALIDATE) || defined(NO_GAP_RECHECK) || defined(SHARED_SEQ) || defined(LATE_UNLOCK)
#define CONTROL 1
#endif

/* vma_start_read results */
#define LOCKED 0
#define WRITE_LOCKED 1
#define DETACHED 2

/* ---- the mm ---------------------------------------------------------- */
byte vma_of[P];           /* the tree */
byte next_vma = 2;        /* next unused VMA object */
#ifdef SHARED_SEQ
byte mm_lock_seq;         /* the control's shared sequence */
#define IS_WLOCKED(x) ((x) == mm_lock_seq)
#define MYSEQ mm_lock_seq
#else
#define IS_WLOCKED(x) ((x) != UNLOCKED)
#define MYSEQ (2 * me + 1)   /* this writer's own odd sequence */
#endif

/* ---- the range lock -------------------------------------------------- */
byte rl_lo[NREQ], rl_hi[NREQ];
bit rl_rd[NREQ];
byte rl_q;                /* queued requests (bit i), granted or not */
byte rl_held;             /* granted requests (ghost, for P0) */
byte rl_ahead[NREQ];      /* requests queued before request i */

#define OVL(i, j) (rl_lo[i] < rl_hi[j] && rl_lo[j] < rl_hi[i])
#define CONFLICT(i, j) (OVL(i, j) && !(rl_rd[i] && rl_rd[j]))
#define BLK(i, j) ((rl_ahead[i] & (1 << j)) && CONFLICT(i, j))
#define GRANTABLE(i) (!BLK(i, 0) && !BLK(i, 1) && !BLK(i, 2) && !BLK(i, 3))
#define HELD_CONFLICT(i, j) ((rl_held & (1 << j)) && CONFLICT(i, j))

/* A stealer i goes ahead of queued request j that conflicts with it: j
 * now waits for i too (a grant j has not claimed is taken back). */
inline rl_pass(i, j) {
  if
  :: (rl_q & (1 << j)) && CONFLICT(i, j) -> rl_ahead[j] = rl_ahead[j] | (1 << i)
  :: else -> skip
  fi
}

#ifdef STEAL_PAST_HELD
#define MAY_STEAL(i) (!rl_rd[i])
#else
#define MAY_STEAL(i) (!rl_rd[i] && !HELD_CONFLICT(i, 0) && !HELD_CONFLICT(i, 1) && \
                      !HELD_CONFLICT(i, 2) && !HELD_CONFLICT(i, 3))
#endif

inline rl_lock(i, l, h, rd) {
  atomic {
    rl_lo[i] = l; rl_hi[i] = h; rl_rd[i] = rd;
    if
    :: rl_ahead[i] = rl_q               /* queue behind every request */
#ifndef NO_STEAL
    :: MAY_STEAL(i) ->                  /* steal: ahead of every waiter */
       rl_ahead[i] = 0;
       rl_pass(i, 0); rl_pass(i, 1); rl_pass(i, 2); rl_pass(i, 3)
#endif
    fi;
    rl_q = rl_q | (1 << i)
  };
  atomic {
    GRANTABLE(i) ->
    assert(!HELD_CONFLICT(i, 0) && !HELD_CONFLICT(i, 1) &&
           !HELD_CONFLICT(i, 2) && !HELD_CONFLICT(i, 3));   /* P0 */
    rl_held = rl_held | (1 << i);
#ifdef SHOW_CONCURRENCY
    assert((rl_held & 3) != 3)   /* fails: writers 0 and 1 hold ranges at once */
#endif
  }
}

inline rl_unlock(i) {
  d_step {
    rl_q = rl_q & ~(1 << i);
    rl_held = rl_held & ~(1 << i);
    rl_ahead[0] = rl_ahead[0] & ~(1 << i);
    rl_ahead[1] = rl_ahead[1] & ~(1 << i);
    rl_ahead[2] = rl_ahead[2] & ~(1 << i);
    rl_ahead[3] = rl_ahead[3] & ~(1 << i);
    rl_lo[i] = 0; rl_hi[i] = 0; rl_rd[i] = 0; rl_ahead[i] = 0
  }
}

/* ---- the VMAs -------------------------------------------------------- */
byte vstart[NV], vend[NV], vflag[NV];
byte vm_lock_seq[NV];
bit detached[NV];
byte sem_readers[NV];     /* vm_lock: readers holding it */
byte sem_writer[NV];      /* vm_lock: 0 free, 1 writer queued, 2 writer holds */

/* ---- ghosts ---------------------------------------------------------- */
byte g_owner[NV];         /* 1 + the writer that has the VMA write-locked */
byte g_readers[NV];       /* readers holding a validated read lock */
bit g_removed[NV];        /* removed from the tree */
byte g_st[P];             /* what each page means: 0 unmapped, else flag */
bit g_inside = 1;         /* P4 */
bit g_free = 1;           /* P6 */
bit g_layout_ok = 1;      /* P7 */

#define P1(v) assert(!(g_readers[v] > 0 && g_owner[v] != 0))

/* The hull of N = [s-1, e+1) (clipped) and the VMAs intersecting it, from
 * the tree alone (tree entries carry their extents).  d_step context. */
inline hull(s, e, lo, hi) {
  if
  :: s > 0 -> lo = s - 1
  :: else -> lo = 0
  fi;
  if
  :: e < P -> hi = e + 1
  :: else -> hi = P
  fi;
  if
  :: vma_of[lo] != NONE ->
     do
     :: lo > 0 && vma_of[lo - 1] == vma_of[lo] -> lo--
     :: else -> break
     od
  :: else -> skip
  fi;
  if
  :: vma_of[hi - 1] != NONE ->
     do
     :: hi < P && vma_of[hi] == vma_of[hi - 1] -> hi++
     :: else -> break
     od
  :: else -> skip
  fi
}

/* vma_start_write(v) in range mode: the "already mine" test compares with
 * this writer's own sequence; the exclusion is the rwsem's. */
inline vma_start_write(v) {
  if
  :: vm_lock_seq[v] == MYSEQ -> skip
  :: else ->
     atomic { sem_writer[v] == 0 -> sem_writer[v] = 1 };   /* down_write: queued */
     atomic { sem_readers[v] == 0 -> sem_writer[v] = 2 };  /* readers gone */
     vm_lock_seq[v] = MYSEQ;
     sem_writer[v] = 0                                     /* up_write, release */
  fi;
  d_step {
    assert(g_owner[v] == 0 || g_owner[v] == me + 1);       /* P5 */
    g_owner[v] = me + 1;
    P1(v);
#ifndef CONTROL
    if
    :: vstart[v] < lo || vend[v] > hi -> g_inside = 0
    :: else -> skip
    fi;
    assert(g_inside)                                       /* P4 */
#endif
  }
}

proctype writer(byte me) {
  byte s, e, f;           /* the operation: pages [s, e) get flag f (0: unmap) */
  bit place;              /* placement: s is searched */
  byte lo, hi;            /* the locked range L */
  byte klo, khi;          /* the hull now (K) */
  bit ok;
  byte p, q, v, fl, x;
  byte nst[P];            /* planned page flags in K */
  byte plan[P];           /* planned VMA object per page in K */
  byte oldset, lockset, newset, used;

  if
  :: me == 0 ->
     if
     :: s = 0; e = 1; f = 2
     :: s = 2; e = 3; f = 1
     fi
  :: me == 1 ->
     if
     :: s = 2; e = 4; f = 1
     :: s = 3; e = 4; f = 1
     :: place = 1; f = 2
     fi
  :: me == 2 -> s = 5; e = 6; f = 2
  fi;

  do
  :: skip ->
     /* 1. under RCU: one snapshot of the tree */
     d_step {
       if
       :: place ->                      /* bottom-up gap search */
          s = 0;
          do
          :: s < P && vma_of[s] != NONE -> s++
          :: else -> break
          od;
          e = s + 1
       :: else -> skip
       fi;
       if
       :: s < P ->
#ifndef NO_NEIGHBOURS
          hull(s, e, lo, hi)
#else
          lo = s; hi = e                /* the control: just the range */
#endif
       :: else -> skip                  /* no room: -ENOMEM */
       fi
     };
     if
     :: s >= P -> goto done
     :: else -> skip
     fi;
     /* 2. the range lock */
     rl_lock(me, lo, hi, 0);
     /* 3. re-validate */
     d_step {
       hull(s, e, klo, khi);
#if !defined(NO_REVALIDATE) && !defined(NO_NEIGHBOURS)
       ok = (klo >= lo && khi <= hi);
#else
       ok = 1;
#endif
#ifndef NO_GAP_RECHECK
       if
       :: place && vma_of[s] != NONE -> ok = 0
       :: else -> skip
       fi
#endif
     };
     if
     :: ok -> ok = 0; break
     :: else -> rl_unlock(me); klo = 0; khi = 0   /* and search again */
     fi
  od;
  skip;                                 /* (a break may not jump into a d_step) */
#ifdef SHARED_SEQ
  d_step {                              /* the session begins */
    if
    :: mm_lock_seq % 2 == 0 -> mm_lock_seq++
    :: else -> skip
    fi
  };
#endif

  /* 4. plan the change of K = [klo, khi) (fields read inside L) */
  d_step {
    p = klo;
    do
    :: p < khi ->
       if
       :: vma_of[p] != NONE -> oldset = oldset | (1 << vma_of[p]); nst[p] = vflag[vma_of[p]]
       :: else -> nst[p] = 0
       fi;
       if
       :: s <= p && p < e -> nst[p] = f
       :: else -> skip
       fi;
       p++
    :: else -> break
    od;
    /* runs of equal non-zero flag become VMAs */
    p = klo;
    do
    :: p < khi && nst[p] == 0 -> plan[p] = NONE; p++
    :: p < khi && nst[p] != 0 ->
       fl = nst[p];
       q = p;
       do
       :: q < khi && nst[q] == fl -> q++
       :: else -> break
       od;
       /* reuse an old VMA of this flag found in the run, else a new one */
       v = NONE;
       x = p;
       do
       :: x < q ->
          if
          :: v == NONE && vma_of[x] != NONE && vflag[vma_of[x]] == fl &&
             !(used & (1 << vma_of[x])) -> v = vma_of[x]
          :: else -> skip
          fi;
          x++
       :: else -> x = 0; break
       od;
       if
       :: v == NONE ->
          assert(next_vma < NV);
          v = next_vma; next_vma++;
          vflag[v] = fl; vstart[v] = p; vend[v] = q;   /* not visible yet */
          newset = newset | (1 << v)
       :: else -> used = used | (1 << v)
       fi;
       x = p;
       do
       :: x < q -> plan[x] = v; x++
       :: else -> x = 0; break
       od;
       p = q
    :: else -> break
    od;
    /* lock: old VMAs removed, or kept with another extent */
    lockset = 0;
    v = 0;
    do
    :: v < NV ->
       if
       :: oldset & (1 << v) ->
          if
          :: !(used & (1 << v)) -> lockset = lockset | (1 << v)
          :: else ->
             p = klo; q = NONE; fl = 0;   /* q: first planned page, fl: last + 1 */
             do
             :: p < khi ->
                if
                :: plan[p] == v && q == NONE -> q = p
                :: else -> skip
                fi;
                if
                :: plan[p] == v -> fl = p + 1
                :: else -> skip
                fi;
                p++
             :: else -> break
             od;
             if
             :: q != vstart[v] || fl != vend[v] -> lockset = lockset | (1 << v)
             :: else -> skip
             fi
          fi
       :: else -> skip
       fi;
       v++
    :: else -> break
    od;
    p = 0; q = 0; v = 0; fl = 0
  };

  /* 5. write-lock what changes; stamp the new VMAs (invisible so far) */
  do
  :: v < NV ->
     if
     :: lockset & (1 << v) -> vma_start_write(v)
     :: else -> skip
     fi;
     v++
  :: else -> v = 0; break
  od;
  skip;
  d_step {
    do
    :: v < NV ->
       if
       :: newset & (1 << v) ->
          vm_lock_seq[v] = MYSEQ; g_owner[v] = me + 1; detached[v] = 0   /* attach */
       :: else -> skip
       fi;
       v++
    :: else -> v = 0; break
    od
  };

  /* 6. publish: one store of the tree (with the VMAs' new extents) */
  d_step {
    p = klo;
    do
    :: p < khi -> vma_of[p] = plan[p]; p++
    :: else -> break
    od;
    do
    :: v < NV ->
       if
       :: (lockset & used) & (1 << v) ->
          p = klo; q = NONE;
          do
          :: p < khi ->
             if
             :: plan[p] == v && q == NONE -> q = p
             :: else -> skip
             fi;
             if
             :: plan[p] == v -> fl = p + 1
             :: else -> skip
             fi;
             p++
          :: else -> break
          od;
          vstart[v] = q; vend[v] = fl
       :: (lockset & ~used) & (1 << v) -> g_removed[v] = 1
       :: else -> skip
       fi;
       if
       :: (lockset | newset) & (1 << v) -> P1(v)
       :: else -> skip
       fi;
       v++
    :: else -> break
    od;
    /* the meaning of the operation */
    p = s;
    do
    :: p < e ->
       if
       :: place && g_st[p] != 0 -> g_free = 0
       :: else -> skip
       fi;
       g_st[p] = f; p++
    :: else -> break
    od;
    assert(g_free);                                        /* P6 */
    p = 0; q = 0; v = 0; fl = 0
  };

  /* detach what was removed (vma_complete), still write-locked */
  d_step {
    do
    :: v < NV ->
       if
       :: (lockset & ~used) & (1 << v) -> P1(v); detached[v] = 1
       :: else -> skip
       fi;
       v++
    :: else -> v = 0; break
    od
  };

#ifdef LATE_UNLOCK
  rl_unlock(me);                        /* the control: range first */
#endif
  /* 7. release this writer's VMA write locks: by its own list */
#ifndef SHARED_SEQ
  do
  :: v < NV ->
     if
     :: (lockset | newset) & (1 << v) ->
        d_step { vm_lock_seq[v] = UNLOCKED; g_owner[v] = 0 }   /* release */
     :: else -> skip
     fi;
     v++
  :: else -> v = 0; break
  od;
  skip;
#else
  d_step {                              /* end the session: bump to even */
    if
    :: mm_lock_seq % 2 == 1 -> mm_lock_seq++
    :: else -> skip
    fi;
    do
    :: v < NV ->
       if
       :: (lockset | newset) & (1 << v) -> g_owner[v] = 0
       :: else -> skip
       fi;
       v++
    :: else -> v = 0; break
    od
  };
#endif
  /* 8. release the range */
#ifndef LATE_UNLOCK
  rl_unlock(me);
#endif
done: skip;
  d_step {
    s = 0; e = 0; f = 0; place = 0; lo = 0; hi = 0; klo = 0; khi = 0;
    oldset = 0; lockset = 0; newset = 0; used = 0;
    p = 0;
    do
    :: p < P -> nst[p] = 0; plan[p] = 0; p++
    :: else -> p = 0; break
    od
  }
}

/* ==== readers ======================================================== */

inline vma_start_read(v) {
  /* 1. quick unordered check */
  seqv = vm_lock_seq[v];
  d_step {
    if
    :: IS_WLOCKED(seqv) -> r = WRITE_LOCKED
    :: else -> r = LOCKED
    fi;
    seqv = 0
  };
  if
  :: r == WRITE_LOCKED -> skip
  :: else ->
     /* 2. try_lock_shared: fails if a writer holds or waits */
     d_step {
       if
       :: sem_writer[v] == 0 -> sem_readers[v]++; r = LOCKED
       :: else -> r = WRITE_LOCKED
       fi
     };
     /* 3. re-check, acquire */
     if
     :: r == LOCKED && IS_WLOCKED(vm_lock_seq[v]) -> r = WRITE_LOCKED; sem_readers[v]--
     :: else -> skip
     fi;
     if
     :: r == LOCKED && detached[v] -> r = DETACHED; sem_readers[v]--
     :: else -> skip
     fi
  fi;
  if
  :: r == LOCKED -> d_step { g_readers[v]++; P1(v) }
  :: else -> skip
  fi
}

proctype reader(byte id) {
  byte k, a, v, r, seqv, got;
  do
  :: k < FAULTS ->
     select(a : 0 .. P - 1);
     /* lock_vma_under_rcu(a) */
     got = NONE;
     do
     :: v = vma_of[a];                  /* RCU lookup */
        if
        :: v == NONE -> break
        :: else -> skip
        fi;
        vma_start_read(v);
        if
        :: r == DETACHED -> skip        /* walk again */
        :: r == WRITE_LOCKED -> break
        :: r == LOCKED ->
           if
           :: a < vstart[v] || a >= vend[v] ->
              d_step { g_readers[v]--; sem_readers[v]-- }; break
           :: else -> got = v; break
           fi
        fi
     od;
     if
     :: got != NONE ->
        d_step {
          assert(!g_removed[got]);                          /* P2 */
          assert(vma_of[a] == got && vflag[got] == g_st[a]) /* P3 */
        };
        d_step { g_readers[got]--; sem_readers[got]-- }     /* vma_end_read */
     :: else ->                         /* fallback: the whole range, read */
        rl_lock(W + id, 0, P, 1);
        d_step {
          v = vma_of[a];
          if
          :: v != NONE -> g_readers[v]++; P1(v); g_readers[v]--;
             assert(vflag[v] == g_st[a])
          :: else -> assert(g_st[a] == 0)
          fi
        };
        rl_unlock(W + id)
     fi;
     d_step { k++; a = 0; v = 0; r = 0; got = 0 }
  :: else -> break
  od
}

init {
  byte i, p;
  atomic {
    i = 0;
    do
    :: i < NV -> vm_lock_seq[i] = UNLOCKED; detached[i] = 1; i++
    :: else -> break
    od;
    i = 0;
    do
    :: i < P -> vma_of[i] = NONE; i++
    :: else -> break
    od;
    vma_of[0] = 0; vma_of[1] = 0; vstart[0] = 0; vend[0] = 2; vflag[0] = 1; detached[0] = 0;
    vma_of[4] = 1; vma_of[5] = 1; vstart[1] = 4; vend[1] = 6; vflag[1] = 1; detached[1] = 0;
    g_st[0] = 1; g_st[1] = 1; g_st[4] = 1; g_st[5] = 1;
    i = 0;
    do
    :: i < W -> run writer(i); i++
    :: else -> break
    od;
    i = 0;
    do
    :: i < READERS -> run reader(i); i++
    :: else -> break
    od
  };
  /* P7: when everybody is done, the layout is consistent */
  _nr_pr == 1;
  d_step {
    p = 0;
    do
    :: p < P ->
       i = vma_of[p];
       if
       :: i == NONE ->
          if
          :: g_st[p] != 0 -> g_layout_ok = 0
          :: else -> skip
          fi
       :: else ->
          if
          :: g_removed[i] || detached[i] || vstart[i] > p || vend[i] <= p || vflag[i] != g_st[p] ->
             g_layout_ok = 0
          :: else -> skip
          fi;
          if                            /* normalised: no mergeable pair */
          :: p > 0 && vma_of[p - 1] != NONE && vma_of[p - 1] != i && vflag[vma_of[p - 1]] == vflag[i] ->
             g_layout_ok = 0
          :: else -> skip
          fi
       fi;
       p++
    :: else -> break
    od;
    i = 0;
    do
    :: i < NV ->
       if
       :: !detached[i] ->              /* attached: the tree maps all of it */
          p = vstart[i];
          do
          :: p < vend[i] ->
             if
             :: vma_of[p] != i -> g_layout_ok = 0
             :: else -> skip
             fi;
             p++
          :: else -> break
          od
       :: else -> skip
       fi;
       if                               /* no lock left behind */
#ifndef SHARED_SEQ
       :: vm_lock_seq[i] != UNLOCKED -> g_layout_ok = 0
#endif
       :: g_owner[i] != 0 || g_readers[i] != 0 || sem_readers[i] != 0 || sem_writer[i] != 0 ->
          g_layout_ok = 0
       :: else -> skip
       fi;
       i++
    :: else -> break
    od;
    if
    :: rl_q != 0 || rl_held != 0 -> g_layout_ok = 0
    :: else -> skip
    fi;
    assert(g_layout_ok)                                     /* P7 */
  }
}
