/* Print the type of every C++ exception a process throws, then throw it as usual.
 *
 * Preloaded (LD_PRELOAD) into MP-SPDZ's VMs in tamper experiments: a VM that finds
 * tampering throws e.g. mac_fail, but when that exception unwinds past a MAC checker
 * with unchecked openings, the checker's destructor prints "SECURITY BUG: insufficient
 * checking" and calls terminate(), and the exception's own message is never printed.
 * This line, written before the throw, keeps it: "cohortbench: C++ exception thrown:
 * mac_fail" (the Itanium ABI's mangled name without its length prefix).  Built by
 * throwtrace.py; the VMs themselves are not changed.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <unistd.h>

typedef void (*cxa_throw_fn)(void *, void *, void (*)(void *));

void __cxa_throw(void *object, void *tinfo, void (*destructor)(void *)) {
    static cxa_throw_fn real;
    if (!real)
        real = (cxa_throw_fn)dlsym(RTLD_NEXT, "__cxa_throw");
    const char *name = ((const char *const *)tinfo)[1];
    while (*name >= '0' && *name <= '9')
        name++;
    char line[256];
    int n = snprintf(line, sizeof line, "\ncohortbench: C++ exception thrown: %s\n", name);
    if (n > 0)
        write(2, line, n < (int)sizeof line ? n : (int)sizeof line - 1);
    real(object, tinfo, destructor);
    __builtin_unreachable();
}
