/*
** sk_shmtypes.h — the type numbers of skein's objects in the shared segment
** (sk_shm.h keeps a table of their operations by number, and a view of an
** object is made by its type's entry). One list, so no two families take
** the same number; fewer than SK_SHM_NTYPES (core/shm_seg.h).
*/
#ifndef SK_SHMTYPES_H
#define SK_SHMTYPES_H

enum {
  SK_SHM_QUEUE = 1, SK_SHM_PIPE_END, SK_SHM_EVENT, SK_SHM_LOCK, SK_SHM_SEM, SK_SHM_COND,
  SK_SHM_BARRIER, SK_SHM_VALUE, SK_SHM_ARRAY, SK_SHM_TABLE, SK_SHM_FUTURE
};

#endif
