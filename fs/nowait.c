/*
 * nowait.c — a thread's "serve without blocking" mode (see nowait.h): one hook per thread, in
 * thread-local storage, run at most once between efs_nowait_begin and efs_nowait_end.
 */
#include "nowait.h"

#include <stddef.h>

static _Thread_local void (*t_hook)(void *);
static _Thread_local void *t_arg;
static _Thread_local bool t_ran;

void efs_nowait_begin(void (*hook)(void *arg), void *arg)
{
    t_hook = hook;
    t_arg = arg;
    t_ran = false;
}

bool efs_nowait_end(void)
{
    bool ran = t_ran;
    t_hook = NULL;
    t_arg = NULL;
    t_ran = false;
    return ran;
}

bool efs_nowait_active(void) { return t_hook != NULL; }

void efs_nowait_will_block(void)
{
    void (*hook)(void *) = t_hook;
    if (!hook)
        return;
    t_hook = NULL; /* at most once; efs_nowait_active is false from here */
    t_ran = true;
    hook(t_arg);
}
