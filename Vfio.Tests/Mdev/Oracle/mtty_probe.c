/* mtty probe for the real-kernel oracle (see docs/mdev.md, "mtty"): creates an mtty-2 and
 * an mtty-1 through sysfs, opens the mtty-2 through vfio and prints what the kernel says to
 * each call, one line per call. MttyOracleTests replays the same sequence on the simulator.
 * Usage: run-oracle.sh mtty_probe.c  (6.1) or ORACLE_KPKG=... run-oracle.sh mtty_probe.c (6.12). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/vfio.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#ifndef VFIO_DEVICE_FEATURE_MIG_DATA_SIZE
#define VFIO_DEVICE_FEATURE_MIG_DATA_SIZE 9
struct vfio_device_feature_mig_data_size { __aligned_u64 stop_copy_length; };
#endif
#ifndef VFIO_MIG_GET_PRECOPY_INFO
#define VFIO_MIG_GET_PRECOPY_INFO _IO(VFIO_TYPE, VFIO_BASE + 21)
struct vfio_precopy_info { __u32 argsz; __u32 flags; __aligned_u64 initial_bytes; __aligned_u64 dirty_bytes; };
#define VFIO_DEVICE_STATE_PRE_COPY 6
#define VFIO_DEVICE_STATE_PRE_COPY_P2P 7
#endif
#define TYPES "/sys/class/mtty/mtty/mdev_supported_types"
#define U2 "83b8f4f2-509f-382f-3c1e-e6bfe0fa1002"
#define U1 "83b8f4f2-509f-382f-3c1e-e6bfe0fa1003"
#define U3 "83b8f4f2-509f-382f-3c1e-e6bfe0fa1004"

static int d;
static void show(const char *what, long r) { printf("%s = %ld%s%s\n", what, r < 0 ? -errno : r, r < 0 ? " " : "", r < 0 ? strerrorname_np(errno) : ""); }
static void cat(const char *p) {
	char b[256] = {0}; int f = open(p, O_RDONLY);
	if (f < 0) { printf("%s: open %s\n", p + sizeof(TYPES), strerrorname_np(errno)); return; }
	long n = read(f, b, sizeof b - 1); close(f);
	if (n > 0 && b[n - 1] == '\n') b[n - 1] = 0;
	printf("%s: %s\n", p + sizeof(TYPES), n < 0 ? "ERR" : b);
}
static long wr(const char *p, const char *s) { int f = open(p, O_WRONLY); if (f < 0) return -1; long r = write(f, s, strlen(s)); int e = errno; close(f); errno = e; return r; }
static void avail(void) { cat(TYPES "/mtty-1/available_instances"); cat(TYPES "/mtty-2/available_instances"); }
static uint64_t off(int idx) { return (uint64_t)idx << 40; }
static int rd8(int bar, int reg) { uint8_t v = 0xEE; long r = pread(d, &v, 1, off(bar) + reg); return r == 1 ? v : -errno; }
static void w8(int bar, int reg, uint8_t v) { long r = pwrite(d, &v, 1, off(bar) + reg); if (r != 1) printf("write bar%d+%d = %ld %s\n", bar, reg, r, strerrorname_np(errno)); }
static uint32_t cfg32(int o) { uint32_t v = 0; pread(d, &v, 4, off(7) + o); return v; }
static void cfgw32(int o, uint32_t v) { show("cfg write32", pwrite(d, &v, 4, off(7) + o)); }
static long evread(int e) { uint64_t v = 0; long r = read(e, &v, 8); return r == 8 ? (long)v : -errno; }
static long setirq(uint32_t flags, uint32_t index, uint32_t start, uint32_t count, const void *data, size_t dlen) {
	char buf[64] = {0}; struct vfio_irq_set *s = (void *)buf;
	s->argsz = sizeof *s + dlen; s->flags = flags; s->index = index; s->start = start; s->count = count;
	if (dlen) memcpy(s->data, data, dlen);
	return ioctl(d, VFIO_DEVICE_SET_IRQS, s);
}
static void regs(const char *tag, int bar) {
	printf("%s: IER=%02x IIR=%02x LCR=%02x MCR=%02x LSR=%02x MSR=%02x SCR=%02x\n", tag,
	       rd8(bar, 1), rd8(bar, 2), rd8(bar, 3), rd8(bar, 4), rd8(bar, 5), rd8(bar, 6), rd8(bar, 7));
}

int main(void) {
	char p[PATH_MAX], link[PATH_MAX];
	cat(TYPES "/mtty-1/name"); cat(TYPES "/mtty-2/name");
	cat(TYPES "/mtty-1/device_api"); cat(TYPES "/mtty-1/description");
	avail();
	show("create mtty-2 " U2, wr(TYPES "/mtty-2/create", U2));
	avail();
	show("create mtty-1 " U1, wr(TYPES "/mtty-1/create", U1));
	avail();
	show("create mtty-2 again", wr(TYPES "/mtty-2/create", U2));
	snprintf(p, sizeof p, "/sys/bus/mdev/devices/%s/iommu_group", U2);
	ssize_t n = readlink(p, link, sizeof link - 1); link[n > 0 ? n : 0] = 0;
	int gid = atoi(strrchr(link, '/') + 1);
	snprintf(p, sizeof p, "/sys/bus/mdev/devices/%s/vendor/sample_mdev_dev", U2); cat(p);
	int c = open("/dev/vfio/vfio", O_RDWR);
	snprintf(p, sizeof p, "/dev/vfio/%d", gid);
	int g = open(p, O_RDWR);
	show("SET_CONTAINER", ioctl(g, VFIO_GROUP_SET_CONTAINER, &c));
	show("SET_IOMMU TYPE1v2", ioctl(c, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU));
	d = ioctl(g, VFIO_GROUP_GET_DEVICE_FD, U2); show("GET_DEVICE_FD", d >= 0 ? 0 : -1);

	/* before GET_INFO */
	struct vfio_region_info ri = { .argsz = sizeof ri, .index = 0 };
	show("pre GET_REGION_INFO 0", ioctl(d, VFIO_DEVICE_GET_REGION_INFO, &ri));
	struct vfio_irq_info ii = { .argsz = sizeof ii, .index = 0 };
	show("pre GET_IRQ_INFO 0", ioctl(d, VFIO_DEVICE_GET_IRQ_INFO, &ii));
	show("pre SET_IRQS INTx trigger none", setirq(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0, 1, 0, 0));

	struct vfio_device_info di = { .argsz = 15 };
	show("GET_INFO argsz 15", ioctl(d, VFIO_DEVICE_GET_INFO, &di));
	di.argsz = sizeof di;
	show("GET_INFO", ioctl(d, VFIO_DEVICE_GET_INFO, &di));
	printf("  argsz=%u flags=0x%x regions=%u irqs=%u\n", di.argsz, di.flags, di.num_regions, di.num_irqs);
	ri.argsz = 31; ri.index = 0;
	show("GET_REGION_INFO argsz 31", ioctl(d, VFIO_DEVICE_GET_REGION_INFO, &ri));
	uint32_t idx[] = {0,1,2,3,4,5,6,7,8,9,10,15,0xffffffff};
	for (unsigned i = 0; i < sizeof idx / sizeof idx[0]; i++) {
		memset(&ri, 0, sizeof ri); ri.argsz = sizeof ri; ri.index = idx[i];
		long r = ioctl(d, VFIO_DEVICE_GET_REGION_INFO, &ri);
		printf("GET_REGION_INFO %u = %ld%s%s flags=0x%x size=0x%llx offset=0x%llx argsz=%u\n", idx[i], r < 0 ? -errno : r, r < 0 ? " " : "", r < 0 ? strerrorname_np(errno) : "", ri.flags, (unsigned long long)ri.size, (unsigned long long)ri.offset, ri.argsz);
	}
	ii.argsz = 15; ii.index = 0;
	show("GET_IRQ_INFO argsz 15", ioctl(d, VFIO_DEVICE_GET_IRQ_INFO, &ii));
	for (unsigned i = 0; i < sizeof idx / sizeof idx[0]; i++) {
		memset(&ii, 0, sizeof ii); ii.argsz = sizeof ii; ii.index = idx[i];
		long r = ioctl(d, VFIO_DEVICE_GET_IRQ_INFO, &ii);
		printf("GET_IRQ_INFO %u = %ld%s%s flags=0x%x count=%u\n", idx[i], r < 0 ? -errno : r, r < 0 ? " " : "", r < 0 ? strerrorname_np(errno) : "", ii.flags, ii.count);
	}

	/* config space */
	for (int o = 0; o < 0x70; o += 16)
		printf("cfg %02x: %08x %08x %08x %08x\n", o, cfg32(o), cfg32(o + 4), cfg32(o + 8), cfg32(o + 12));
	cfgw32(0x10, 0xffffffff); printf("BAR0 after ~0: %08x\n", cfg32(0x10));
	cfgw32(0x10, 0x0000c001); printf("BAR0 after c001: %08x\n", cfg32(0x10));
	cfgw32(0x14, 0xffffffff); printf("BAR1 after ~0: %08x\n", cfg32(0x14));
	cfgw32(0x18, 0xffffffff); printf("BAR2 after ~0: %08x\n", cfg32(0x18));
	cfgw32(0x3c, 0x0000ff0b); printf("3c after 0xff0b: %08x\n", cfg32(0x3c));
	cfgw32(0x04, 0x00000007); printf("04 after 7: %08x\n", cfg32(0x04));
	cfgw32(0x40, 0x12345678); printf("40 after write: %08x\n", cfg32(0x40));
	{ uint8_t b[2] = {0}; show("cfg read 2 at 0xfe", pread(d, b, 2, off(7) + 0xfe)); }
	{ uint8_t b[1] = {0}; show("read region 9", pread(d, b, 1, off(9))); }
	{ uint8_t b[1] = {0}; show("read bar2", pread(d, b, 1, off(2))); }
	{ uint8_t b[4] = {0}; show("read bar0 4 bytes", pread(d, b, 4, off(0))); printf("  %02x %02x %02x %02x\n", b[0], b[1], b[2], b[3]); }

	/* UART */
	regs("reset", 0);
	printf("RBR empty=%d\n", rd8(0, 0));
	w8(0, 7, 0x5a); printf("SCR=%02x\n", rd8(0, 7));
	w8(0, 3, 0x80); w8(0, 0, 0x0c); w8(0, 1, 0x00); printf("DLL=%02x DLM=%02x\n", rd8(0, 0), rd8(0, 1));
	w8(0, 0, 0x01); printf("DLL after 2nd write=%02x\n", rd8(0, 0));
	w8(0, 3, 0x03); regs("8N1", 0);
	const char *msg = "hello";
	for (const char *s = msg; *s; s++) w8(0, 0, *s);
	regs("after hello (no FCR)", 0);
	w8(0, 2, 0x07); regs("after FCR 07", 0);
	for (const char *s = msg; *s; s++) w8(0, 0, *s);
	regs("after hello", 0);
	printf("rx:"); for (int i = 0; i < 6; i++) printf(" %02x", rd8(0, 0)); printf("\n");
	regs("after read", 0);
	for (int i = 0; i < 15; i++) w8(0, 0, 'A' + i);
	regs("15 bytes", 0);
	w8(0, 0, 'P'); regs("16 bytes", 0);
	w8(0, 0, 'Q'); regs("17 bytes", 0);
	printf("rx:"); for (int i = 0; i < 3; i++) printf(" %02x", rd8(0, 0)); printf("\n");
	regs("after 3 reads", 0);
	w8(0, 2, 0x07); regs("cleared", 0);
	w8(0, 2, 0xc1); printf("FCR trig14 IIR=%02x\n", rd8(0, 2));
	w8(0, 4, 0x23); regs("MCR 23", 0);
	w8(0, 1, 0x0f); regs("IER 0f", 0);
	w8(0, 0, 'x'); regs("IER 0f + 1 byte", 0);
	w8(0, 2, 0x06); w8(0, 1, 0x00); w8(0, 4, 0x00);
	regs("bar1", 1);
	w8(1, 7, 0x77); printf("bar1 SCR=%02x bar0 SCR=%02x\n", rd8(1, 7), rd8(0, 7));

	/* IRQs */
	int e1 = eventfd(0, EFD_NONBLOCK), e2 = eventfd(0, EFD_NONBLOCK);
	show("INTx trigger none (no irq)", setirq(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0, 1, 0, 0));
	show("INTx unmask (no irq)", setirq(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, 0, 0, 1, 0, 0));
	show("MSIX trigger none", setirq(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 2, 0, 1, 0, 0));
	show("ERR trigger none", setirq(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 3, 0, 1, 0, 0));
	show("REQ trigger none", setirq(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 4, 0, 1, 0, 0));
	show("INTx count 2", setirq(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0, 2, 0, 0));
	show("INTx argsz 19", ({ struct vfio_irq_set s = { .argsz = 19, .flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, .count = 1 }; ioctl(d, VFIO_DEVICE_SET_IRQS, &s); }));
	show("INTx eventfd", setirq(VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0, 1, &e1, 4));
	show("INTx trigger none", setirq(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0, 1, 0, 0));
	printf("intx ev=%ld\n", evread(e1));
	show("INTx trigger none again", setirq(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0, 1, 0, 0));
	printf("intx ev=%ld\n", evread(e1));
	show("INTx unmask", setirq(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, 0, 0, 1, 0, 0));
	{ uint8_t one = 1; show("INTx trigger bool 1", setirq(VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0, 1, &one, 1)); }
	printf("intx ev=%ld\n", evread(e1));
	show("INTx unmask", setirq(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, 0, 0, 1, 0, 0));
	show("INTx mask", setirq(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK, 0, 0, 1, 0, 0));
	w8(0, 1, 0x02); printf("IER THRI under mask: intx ev=%ld\n", evread(e1));
	show("INTx unmask", setirq(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, 0, 0, 1, 0, 0));
	w8(0, 1, 0x00); w8(0, 1, 0x02); printf("IER THRI unmasked: intx ev=%ld\n", evread(e1));
	w8(0, 1, 0x01); w8(0, 0, 'z'); printf("RDI 1 byte: intx ev=%ld\n", evread(e1));
	show("INTx unmask", setirq(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, 0, 0, 1, 0, 0));
	printf("RBR=%02x\n", rd8(0, 0)); w8(0, 1, 0x00);
	{ int fd = e2; show("INTx mask eventfd", setirq(VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_MASK, 0, 0, 1, &fd, 4)); }
	{ int fd = e2; show("INTx unmask eventfd", setirq(VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_UNMASK, 0, 0, 1, &fd, 4)); }
	show("MSI eventfd while INTx", setirq(VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 1, 0, 1, &e2, 4));
	show("MSI mask", setirq(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK, 1, 0, 1, 0, 0));
	show("INTx disable", setirq(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0, 0, 0, 0));
	show("MSI eventfd", setirq(VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 1, 0, 1, &e2, 4));
	show("MSI trigger none", setirq(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 1, 0, 1, 0, 0));
	show("MSI trigger none", setirq(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 1, 0, 1, 0, 0));
	printf("msi ev=%ld intx ev=%ld\n", evread(e2), evread(e1));
	w8(0, 2, 0x07); w8(0, 1, 0x01);
	for (int i = 0; i < 3; i++) w8(0, 0, '1' + i);
	printf("MSI RDI 3 bytes: msi ev=%ld\n", evread(e2));
	w8(0, 1, 0x02); printf("MSI THRI with data: msi ev=%ld\n", evread(e2));
	for (int i = 0; i < 3; i++) rd8(0, 0);
	printf("MSI drained with THRI: msi ev=%ld\n", evread(e2));
	w8(0, 1, 0x04); for (int i = 0; i < 17; i++) w8(0, 0, 'a');
	printf("MSI overrun RLSI: msi ev=%ld\n", evread(e2));
	w8(0, 2, 0x07); w8(0, 1, 0x08); w8(0, 4, 0x08); printf("MSI MCR OUT2: msi ev=%ld\n", evread(e2));
	w8(0, 4, 0x03); printf("MSI MCR RTS|DTR: msi ev=%ld\n", evread(e2));
	w8(0, 4, 0x0b); printf("MSI MCR OUT2|RTS|DTR: msi ev=%ld\n", evread(e2));
	w8(0, 4, 0x00); w8(0, 1, 0x00);
	show("INTx eventfd while MSI", setirq(VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0, 1, &e1, 4));
	show("MSI disable", setirq(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 1, 0, 0, 0, 0));
	show("RESET", ioctl(d, VFIO_DEVICE_RESET));
	regs("after reset", 0);

	/* migration */
	struct { struct vfio_device_feature f; struct vfio_device_feature_migration m; } mf = { { .argsz = sizeof mf, .flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIGRATION } };
	show("FEATURE GET MIGRATION", ioctl(d, VFIO_DEVICE_FEATURE, &mf));
	printf("  mig flags=0x%llx\n", (unsigned long long)mf.m.flags);
	struct vfio_device_feature lf = { .argsz = sizeof lf, .flags = VFIO_DEVICE_FEATURE_PROBE | VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_DMA_LOGGING_START };
	show("FEATURE PROBE DMA_LOGGING_START", ioctl(d, VFIO_DEVICE_FEATURE, &lf));
	struct { struct vfio_device_feature f; struct vfio_device_feature_mig_state s; } sf = { { .argsz = sizeof sf, .flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE } };
	show("FEATURE GET MIG_DEVICE_STATE", ioctl(d, VFIO_DEVICE_FEATURE, &sf));
	printf("  state=%u\n", sf.s.device_state);
	struct { struct vfio_device_feature f; struct vfio_device_feature_mig_data_size s; } zf = { { .argsz = sizeof zf, .flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DATA_SIZE } };
	show("FEATURE GET MIG_DATA_SIZE", ioctl(d, VFIO_DEVICE_FEATURE, &zf));
	printf("  stop_copy_length=%llu\n", (unsigned long long)zf.s.stop_copy_length);
	if (mf.m.flags) {
		w8(0, 2, 0x07); w8(0, 7, 0x42); w8(0, 1, 0x05);
		for (const char *s = "mig"; *s; s++) w8(0, 0, *s);
		sf.f.flags = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE; sf.s.device_state = VFIO_DEVICE_STATE_PRE_COPY;
		show("SET PRE_COPY", ioctl(d, VFIO_DEVICE_FEATURE, &sf)); int pfd = sf.s.data_fd; printf("  data_fd valid=%d\n", pfd >= 0);
		struct vfio_precopy_info pi = { .argsz = sizeof pi };
		show("PRECOPY_INFO", ioctl(pfd, VFIO_MIG_GET_PRECOPY_INFO, &pi)); printf("  initial=%llu dirty=%llu\n", (unsigned long long)pi.initial_bytes, (unsigned long long)pi.dirty_bytes);
		uint8_t buf[512]; long nr = read(pfd, buf, sizeof buf); printf("precopy read = %ld\n", nr);
		sf.s.device_state = VFIO_DEVICE_STATE_STOP_COPY;
		show("SET STOP_COPY", ioctl(d, VFIO_DEVICE_FEATURE, &sf)); printf("  data_fd=%d same=%d\n", sf.s.data_fd, sf.s.data_fd == pfd);
		show("PRECOPY_INFO in STOP_COPY", ioctl(pfd, VFIO_MIG_GET_PRECOPY_INFO, &pi));
		long nr2 = read(pfd, buf + (nr > 0 ? nr : 0), sizeof buf - (nr > 0 ? nr : 0)); printf("stopcopy read = %ld\n", nr2);
		long total = (nr > 0 ? nr : 0) + (nr2 > 0 ? nr2 : 0);
		printf("stream %ld:", total); for (long i = 0; i < total; i++) printf("%s%02x", i % 32 ? "" : "\n  ", buf[i]); printf("\n");
		printf("read at end = %ld\n", read(pfd, buf + 400, 8));
		sf.s.device_state = VFIO_DEVICE_STATE_STOP;
		show("SET STOP", ioctl(d, VFIO_DEVICE_FEATURE, &sf));
		printf("read after STOP = %ld %s\n", read(pfd, buf + 400, 8), strerrorname_np(errno));
		close(pfd);
		sf.s.device_state = VFIO_DEVICE_STATE_RESUMING;
		show("SET RESUMING", ioctl(d, VFIO_DEVICE_FEATURE, &sf)); int rfd = sf.s.data_fd;
		show("resume write too long", write(rfd, buf, total + 1));
		uint8_t bad[512]; memcpy(bad, buf, total); bad[0] ^= 1;
		show("resume write bad magic", write(rfd, bad, total));
		close(rfd);
		sf.s.device_state = VFIO_DEVICE_STATE_RUNNING;
		show("SET RUNNING from RESUMING (bad stream)", ioctl(d, VFIO_DEVICE_FEATURE, &sf));
		sf.f.flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE;
		show("GET state", ioctl(d, VFIO_DEVICE_FEATURE, &sf)); printf("  state=%u\n", sf.s.device_state);
		sf.f.flags = VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE;
		sf.s.device_state = VFIO_DEVICE_STATE_STOP; show("SET STOP", ioctl(d, VFIO_DEVICE_FEATURE, &sf));
		sf.s.device_state = VFIO_DEVICE_STATE_RESUMING; show("SET RESUMING", ioctl(d, VFIO_DEVICE_FEATURE, &sf)); rfd = sf.s.data_fd;
		show("resume write 10", write(rfd, buf, 10));
		sf.s.device_state = VFIO_DEVICE_STATE_STOP; show("SET STOP short stream", ioctl(d, VFIO_DEVICE_FEATURE, &sf));
		show("resume write rest", write(rfd, buf + 10, total - 10));
		/* clobber state, then resume */
		w8(0, 2, 0x07); w8(0, 7, 0x00); w8(0, 1, 0x00);
		show("SET STOP", ioctl(d, VFIO_DEVICE_FEATURE, &sf));
		close(rfd);
		sf.s.device_state = VFIO_DEVICE_STATE_RUNNING; show("SET RUNNING", ioctl(d, VFIO_DEVICE_FEATURE, &sf));
		regs("after resume", 0);
		printf("rx:"); for (int i = 0; i < 4; i++) printf(" %02x", rd8(0, 0)); printf("\n");
		sf.s.device_state = 99; show("SET state 99", ioctl(d, VFIO_DEVICE_FEATURE, &sf));
		sf.s.device_state = VFIO_DEVICE_STATE_RUNNING_P2P; show("SET RUNNING_P2P", ioctl(d, VFIO_DEVICE_FEATURE, &sf));
		sf.s.device_state = VFIO_DEVICE_STATE_RESUMING; show("SET RESUMING from P2P", ioctl(d, VFIO_DEVICE_FEATURE, &sf)); close(sf.s.data_fd);
		sf.s.device_state = VFIO_DEVICE_STATE_PRE_COPY_P2P; show("SET PRE_COPY_P2P from RESUMING", ioctl(d, VFIO_DEVICE_FEATURE, &sf));
		sf.s.device_state = VFIO_DEVICE_STATE_RUNNING; show("SET RUNNING", ioctl(d, VFIO_DEVICE_FEATURE, &sf));
		sf.s.device_state = VFIO_DEVICE_STATE_PRE_COPY; show("SET PRE_COPY", ioctl(d, VFIO_DEVICE_FEATURE, &sf)); pfd = sf.s.data_fd;
		show("RESET in PRE_COPY", ioctl(d, VFIO_DEVICE_RESET));
		sf.f.flags = VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE;
		show("GET state", ioctl(d, VFIO_DEVICE_FEATURE, &sf)); printf("  state=%u\n", sf.s.device_state);
		printf("read after reset = %ld %s\n", read(pfd, buf, 8), strerrorname_np(errno));
		close(pfd);
	}
	/* close with eventfds set, then reopen: are they gone? */
	show("MSI eventfd", setirq(VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 1, 0, 1, &e2, 4));
	close(d);
	d = ioctl(g, VFIO_GROUP_GET_DEVICE_FD, U2); show("reopen", d >= 0 ? 0 : -1);
	show("INTx eventfd after reopen", setirq(VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0, 1, &e1, 4));
	w8(0, 1, 0x00); w8(0, 1, 0x02); printf("after reopen: msi ev=%ld intx ev=%ld\n", evread(e2), evread(e1));
	close(d); close(g); close(c);
	snprintf(p, sizeof p, "/sys/bus/mdev/devices/%s/remove", U2); show("remove mtty-2", wr(p, "1"));
	avail();
	/* fill the pool */
	char u[64]; int made = 0;
	for (int i = 0; i < 30; i++) {
		snprintf(u, sizeof u, "83b8f4f2-509f-382f-3c1e-e6bfe0fa2%03d", i);
		long r = wr(TYPES "/mtty-2/create", u);
		if (r < 0) { printf("create #%d = %s\n", i, strerrorname_np(errno)); break; }
		made++;
	}
	printf("made %d mtty-2\n", made);
	avail();
	show("create mtty-1 " U3, wr(TYPES "/mtty-1/create", U3));
	show("create mtty-1 again", wr(TYPES "/mtty-1/create", U3 "x"));
	avail();
	return 0;
}
