/* Grouping tasks by a resource they may share (kcmp(2): KCMP_FILES, KCMP_VM...), in C: a sort
 * with a Python comparator costs about ten times the syscalls it makes. */
#include <errno.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

struct kcmp_sort {
	int type;
	int err;	/* the first failure: an errno */
};

static int kcmp_order(const void *a, const void *b, void *arg)
{
	struct kcmp_sort *k = arg;
	long r;

	if (k->err)
		return 0;
	r = syscall(SYS_kcmp, *(const int *)a, *(const int *)b, k->type, 0, 0);
	if (r < 0 || r > 2) {	/* 3: unequal, no order (pointer hashing unavailable) */
		k->err = r < 0 ? errno : EOPNOTSUPP;
		return 0;
	}
	return r == 0 ? 0 : r == 1 ? -1 : 1;
}

/* Sort pids by kcmp's order of their `type` resource and number the groups that share one:
 * group[i] is the group of pids[i] after the sort, from 0. Returns 0, or the errno of the
 * first failing kcmp (the order is then meaningless). */
static int ckpt_kcmp_groups(int *pids, int n, int type, int *group)
{
	struct kcmp_sort k = { type, 0 };
	int i;

	qsort_r(pids, (size_t)n, sizeof(*pids), kcmp_order, &k);
	for (i = 0; i < n && !k.err; i++)
		group[i] = i == 0 ? 0 : group[i - 1] + (kcmp_order(&pids[i - 1], &pids[i], &k) != 0);
	return k.err;
}
