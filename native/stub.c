/* ckpt-stub: the restore plan executor's small body. A child of the restorer execs it with
 * the shared table's memfd and its actor index; it maps the table and runs that actor's
 * operations (native/plan_exec.c), forking its own children from here. Built static by
 * setup.py (no loader, few areas): a fork of it is cheap, and its address space is quick
 * to empty when the restorer rebuilds the task. Not meant to be run by hand. */
#define _GNU_SOURCE
#define PLAN_STUB	/* the actor side only: no ckpt_plan_run */
#include <stdlib.h>
#include <sys/stat.h>

#include "plan_exec.c"

int main(int argc, char **argv)
{
	struct ckpt_plan_shared *s;
	struct stat st;
	int fd, me;

	if (argc != 3)
		return 2;
	fd = atoi(argv[1]);
	me = atoi(argv[2]);
	if (fstat(fd, &st) < 0)
		return 2;
	s = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (s == MAP_FAILED)
		return 2;
	close(fd);
	if (me <= 0 || me >= s->nactors)
		return 2;
	plan_actor(s, me);	/* never returns */
	return 2;
}
