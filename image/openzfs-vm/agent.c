/*
 * bulwark-vm-agent: the guest side of the OpenZFS test machine's command channel (see README.md).
 *
 * Runs as PID 1 (exec'ed by /init). For every virtio-serial port named "bulwark.*" it forks a worker that
 * serves requests on that port one at a time: run an argv (never through a shell), pass stdin to it, send
 * its stdout and stderr back, then its exit status, all byte-exact. The host runs several commands at once
 * (zfs send | zfs receive) on several ports. PID 1 itself reaps orphans, restarts a worker that died, and
 * stands in for udevd (below).
 *
 * Frames, both ways: 1 type byte, a 4-byte big-endian payload length, the payload.
 *   host -> guest   'E' exec: flags byte (bit 0: stdin is piped), argv strings each NUL-terminated, an empty
 *                       string, then environment strings KEY=VALUE each NUL-terminated;
 *                   'I' stdin data, 'i' end of stdin (sent once after every piped exec, even a failed one);
 *                   'P' ping, 'K' kill (4-byte pid: SIGKILL to its process group), 'Q' power off.
 *   guest -> host   'S' started (4-byte pid) or 'F' failed to start (4-byte errno, message);
 *                   'O' stdout data, 'R' stderr data, 'C' the command no longer reads its stdin;
 *                   'X' exit (4-byte signed: exit code, or minus the signal number) -- always last;
 *                   'p' pong (agent version), 'k' killed (4-byte: 0 or errno), 'q' powering off.
 *
 * udev stand-in: Debian's libzfs waits for udev to publish a link for a partition it has just made on a
 * whole disk ("failed to detect device partitions"). Every 100 ms PID 1 writes /run/udev/data/b<maj>:<min>
 * with "S:disk/by-bulwark/<name>" for each block device and makes that link.
 *
 * Build: gcc -static -O2 -Wall -Wextra -Werror -s -o bulwark-vm-agent agent.c
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define VERSION "bulwark-vm-agent 1"
#define MAX_PORTS 32
#define MAX_FRAME (4u << 20)
#define CHUNK 65536

static const char *const base_env_path = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";

static void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logmsg(const char *fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	fputs("bulwark-vm-agent: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* -- frames ------------------------------------------------------------------------------------------ */

static int port_fd = -1;
static unsigned char *frame_buf;

static int read_full(int fd, void *buf, size_t len) {
	size_t done = 0;
	while (done < len) {
		ssize_t n = read(fd, (char *)buf + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0) { /* the host is not connected (virtio-serial reads 0): wait for it */
			if (done == 0)
				return 0;
			usleep(10000);
			continue;
		}
		done += (size_t)n;
	}
	return 1;
}

static int write_full(int fd, const void *buf, size_t len) {
	size_t done = 0;
	while (done < len) {
		ssize_t n = write(fd, (const char *)buf + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		done += (size_t)n;
	}
	return 0;
}

static void put32(unsigned char *p, uint32_t v) {
	p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}

static uint32_t get32(const unsigned char *p) {
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void send_frame(char type, const void *data, size_t len) {
	unsigned char head[5];
	head[0] = (unsigned char)type;
	put32(head + 1, (uint32_t)len);
	if (write_full(port_fd, head, 5) < 0 || (len && write_full(port_fd, data, len) < 0)) {
		logmsg("writing to the port failed: %s", strerror(errno));
		_exit(1); /* PID 1 starts a new worker */
	}
}

static void send32(char type, uint32_t value) {
	unsigned char b[4];
	put32(b, value);
	send_frame(type, b, 4);
}

/* Read one frame into frame_buf; returns its type, or 0 when the host is not connected. */
static int recv_frame(uint32_t *len) {
	unsigned char head[5];
	int r = read_full(port_fd, head, 5);
	if (r == 0)
		return 0;
	if (r < 0) {
		logmsg("reading the port failed: %s", strerror(errno));
		_exit(1);
	}
	*len = get32(head + 1);
	if (*len > MAX_FRAME) {
		logmsg("frame of %u bytes refused", *len);
		_exit(1);
	}
	if (*len && read_full(port_fd, frame_buf, *len) != 1) {
		logmsg("short frame");
		_exit(1);
	}
	return head[0];
}

/* -- running a command ----------------------------------------------------------------------------- */

static void set_nonblock(int fd) {
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* Discard the rest of a request's stdin, up to its 'i'. */
static void drain_stdin(void) {
	uint32_t len;
	for (;;) {
		int type = recv_frame(&len);
		if (type == 0) {
			usleep(10000);
			continue;
		}
		if (type == 'i')
			return;
		if (type != 'I' && type != 'K') {
			logmsg("frame '%c' inside a request", type);
			_exit(1);
		}
	}
}

static void run_command(uint32_t len) {
	if (len < 3 || frame_buf[len - 1] != '\0') {
		logmsg("malformed exec request");
		_exit(1);
	}
	int piped = frame_buf[0] & 1;
	char *argv[4096], *envp[256];
	int argc = 0, envc = 0, has_path = 0;
	char *p = (char *)frame_buf + 1, *end = (char *)frame_buf + len;
	while (p < end && *p && argc < 4095) {
		argv[argc++] = p;
		p += strlen(p) + 1;
	}
	argv[argc] = NULL;
	if (p < end)
		p++; /* the empty string after argv */
	while (p < end && envc < 254) {
		has_path |= strncmp(p, "PATH=", 5) == 0;
		envp[envc++] = p;
		p += strlen(p) + 1;
	}
	if (!has_path)
		envp[envc++] = (char *)base_env_path;
	envp[envc] = NULL;
	if (argc == 0) {
		logmsg("exec request without argv");
		_exit(1);
	}

	int in[2] = {-1, -1}, out[2], err[2], status[2];
	if ((piped && pipe2(in, O_CLOEXEC) < 0) || pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 ||
	    pipe2(status, O_CLOEXEC) < 0) {
		logmsg("pipe: %s", strerror(errno));
		_exit(1);
	}
	pid_t pid = fork();
	if (pid < 0) {
		logmsg("fork: %s", strerror(errno));
		_exit(1);
	}
	if (pid == 0) {
		setsid();
		int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
		dup2(piped ? in[0] : null, 0);
		dup2(out[1], 1);
		dup2(err[1], 2);
		signal(SIGPIPE, SIG_DFL);
		if (chdir("/") < 0) { /* (cannot happen) */ }
		extern char **environ;
		environ = envp;
		execvp(argv[0], argv);
		int e = errno;
		if (write(status[1], &e, sizeof e) < 0) { /* (nothing to do) */ }
		_exit(127);
	}
	close(status[1]);
	close(out[1]);
	close(err[1]);
	if (piped)
		close(in[0]);
	int exec_errno = 0;
	ssize_t got;
	do
		got = read(status[0], &exec_errno, sizeof exec_errno);
	while (got < 0 && errno == EINTR);
	close(status[0]);
	if (got == (ssize_t)sizeof exec_errno) {
		waitpid(pid, NULL, 0);
		const char *msg = strerror(exec_errno);
		unsigned char b[512];
		put32(b, (uint32_t)exec_errno);
		size_t n = strlen(msg) < sizeof b - 4 ? strlen(msg) : sizeof b - 4;
		memcpy(b + 4, msg, n);
		send_frame('F', b, 4 + n);
		if (piped)
			close(in[1]);
		close(out[0]);
		close(err[0]);
		if (piped)
			drain_stdin();
		return;
	}
	send32('S', (uint32_t)pid);

	int stdin_fd = piped ? in[1] : -1; /* open while the command may still read */
	int host_eof = !piped;             /* the host's 'i' has come */
	int close_after_pending = 0;
	unsigned char *pending = malloc(MAX_FRAME);
	size_t pending_len = 0, pending_off = 0;
	static unsigned char chunk[CHUNK];
	int out_fd = out[0], err_fd = err[0];
	if (stdin_fd >= 0)
		set_nonblock(stdin_fd);
	set_nonblock(out_fd);
	set_nonblock(err_fd);

	while (out_fd >= 0 || err_fd >= 0) {
		struct pollfd fds[4];
		int nfds = 0, i_port = -1, i_in = -1, i_out = -1, i_err = -1;
		if (!host_eof && pending_len == 0) {
			i_port = nfds;
			fds[nfds++] = (struct pollfd){.fd = port_fd, .events = POLLIN};
		}
		if (stdin_fd >= 0 && pending_len > 0) {
			i_in = nfds;
			fds[nfds++] = (struct pollfd){.fd = stdin_fd, .events = POLLOUT};
		}
		if (out_fd >= 0) {
			i_out = nfds;
			fds[nfds++] = (struct pollfd){.fd = out_fd, .events = POLLIN};
		}
		if (err_fd >= 0) {
			i_err = nfds;
			fds[nfds++] = (struct pollfd){.fd = err_fd, .events = POLLIN};
		}
		if (poll(fds, nfds, -1) < 0) {
			if (errno == EINTR)
				continue;
			logmsg("poll: %s", strerror(errno));
			_exit(1);
		}
		if (i_port >= 0 && fds[i_port].revents) {
			uint32_t len2;
			int type = recv_frame(&len2);
			if (type == 0) {
				usleep(10000); /* host not connected (POLLHUP): it will come back */
			} else if (type == 'I') {
				if (stdin_fd >= 0 && len2 > 0) {
					memcpy(pending, frame_buf, len2);
					pending_len = len2;
					pending_off = 0;
				}
			} else if (type == 'i') {
				host_eof = 1;
				if (pending_len > 0)
					close_after_pending = 1;
				else if (stdin_fd >= 0) {
					close(stdin_fd);
					stdin_fd = -1;
				}
			} else if (type == 'K') {
				kill(-pid, SIGKILL);
			} else {
				logmsg("frame '%c' inside a request", type);
				_exit(1);
			}
		}
		if (i_in >= 0 && fds[i_in].revents) {
			ssize_t n = write(stdin_fd, pending + pending_off, pending_len - pending_off);
			if (n < 0 && errno != EAGAIN && errno != EINTR) { /* EPIPE: it stopped reading */
				close(stdin_fd);
				stdin_fd = -1;
				pending_len = 0;
				send_frame('C', NULL, 0);
			} else if (n > 0) {
				pending_off += (size_t)n;
				if (pending_off == pending_len) {
					pending_len = 0;
					if (close_after_pending) {
						close(stdin_fd);
						stdin_fd = -1;
					}
				}
			}
		}
		int fdi[2] = {i_out, i_err};
		int *fdp[2] = {&out_fd, &err_fd};
		char kind[2] = {'O', 'R'};
		for (int k = 0; k < 2; k++) {
			if (fdi[k] < 0 || !fds[fdi[k]].revents)
				continue;
			ssize_t n = read(*fdp[k], chunk, sizeof chunk);
			if (n > 0) {
				send_frame(kind[k], chunk, (size_t)n);
			} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
				close(*fdp[k]);
				*fdp[k] = -1;
			}
		}
	}
	free(pending);
	int st = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (stdin_fd >= 0)
		close(stdin_fd);
	int32_t code = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? -WTERMSIG(st) : -1;
	send32('X', (uint32_t)code);
	if (!host_eof)
		drain_stdin();
}

static void serve(const char *device) {
	frame_buf = malloc(MAX_FRAME);
	port_fd = open(device, O_RDWR | O_CLOEXEC);
	if (port_fd < 0 || frame_buf == NULL) {
		logmsg("cannot open %s: %s", device, strerror(errno));
		_exit(1);
	}
	for (;;) {
		uint32_t len;
		int type = recv_frame(&len);
		switch (type) {
		case 0:
			usleep(100000); /* no host yet */
			break;
		case 'E':
			run_command(len);
			break;
		case 'P':
			send_frame('p', VERSION, strlen(VERSION));
			break;
		case 'K': {
			int rc = len == 4 && kill(-(pid_t)get32(frame_buf), SIGKILL) < 0 ? errno : 0;
			send32('k', (uint32_t)rc);
			break;
		}
		case 'Q':
			sync();
			send_frame('q', NULL, 0);
			usleep(200000);
			reboot(RB_POWER_OFF);
			_exit(1);
		default:
			logmsg("unknown request '%c' on %s", type, device);
			_exit(1);
		}
	}
}

/* -- PID 1 ----------------------------------------------------------------------------------------- */

static void udev_standin(void) {
	DIR *d = opendir("/sys/class/block");
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		char path[512], dev[64] = "", data[512], link[512];
		snprintf(path, sizeof path, "/sys/class/block/%s/dev", e->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		if (!fgets(dev, sizeof dev, f))
			dev[0] = '\0';
		fclose(f);
		dev[strcspn(dev, "\n")] = '\0';
		if (!dev[0])
			continue;
		snprintf(data, sizeof data, "/run/udev/data/b%s", dev);
		if (access(data, F_OK) == 0)
			continue;
		snprintf(link, sizeof link, "/dev/disk/by-bulwark/%s", e->d_name);
		char target[512];
		snprintf(target, sizeof target, "../../%s", e->d_name);
		unlink(link);
		if (symlink(target, link) < 0)
			continue;
		FILE *out = fopen(data, "w");
		if (out) {
			fprintf(out, "S:disk/by-bulwark/%s\n", e->d_name);
			fclose(out);
		}
	}
	closedir(d);
}

static int find_ports(char devices[][300], int max) {
	int n = 0;
	DIR *d = opendir("/sys/class/virtio-ports");
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL && n < max) {
		if (e->d_name[0] == '.')
			continue;
		char path[512], name[128] = "";
		snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", e->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		if (!fgets(name, sizeof name, f))
			name[0] = '\0';
		fclose(f);
		if (strncmp(name, "bulwark.", 8) == 0)
			snprintf(devices[n++], 300, "/dev/%s", e->d_name);
	}
	closedir(d);
	return n;
}

static pid_t start_worker(const char *device) {
	pid_t pid = fork();
	if (pid == 0) {
		serve(device);
		_exit(0);
	}
	return pid;
}

int main(void) {
	signal(SIGPIPE, SIG_IGN);
	mkdir("/run/udev", 0755);
	mkdir("/run/udev/data", 0755);
	mkdir("/dev/disk", 0755);
	mkdir("/dev/disk/by-bulwark", 0755);
	udev_standin();

	static char devices[MAX_PORTS][300];
	int n = 0;
	for (int tries = 0; tries < 100 && (n = find_ports(devices, MAX_PORTS)) == 0; tries++)
		usleep(100000);
	if (n == 0)
		logmsg("no virtio-serial port named bulwark.* found");
	pid_t workers[MAX_PORTS];
	for (int i = 0; i < n; i++) {
		/* the device node appears shortly after the sysfs entry */
		for (int tries = 0; tries < 50 && access(devices[i], F_OK) != 0; tries++)
			usleep(100000);
		workers[i] = start_worker(devices[i]);
	}
	logmsg("serving %d port(s)", n);
	for (;;) {
		struct timespec pause = {0, 100000000};
		nanosleep(&pause, NULL);
		udev_standin();
		pid_t pid;
		int st;
		while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
			for (int i = 0; i < n; i++) {
				if (workers[i] == pid) {
					logmsg("worker for %s ended; starting another", devices[i]);
					workers[i] = start_worker(devices[i]);
				}
			}
		}
	}
}
