using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Fs;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;

namespace Vfio.Tests.Platform;

public sealed class MmTests
{
    private const Prot RW = Prot.PROT_READ | Prot.PROT_WRITE;
    private const MapFlags Anon = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS;
    private static readonly long EINVAL = Errno.EINVAL.Negative();
    private static readonly long ENOMEM = Errno.ENOMEM.Negative();
    private static readonly long EFAULT = Errno.EFAULT.Negative();

    [Test]
    public void Mmap_RejectsBadArguments_WithTheKernelsErrnos()
    {
        SimMachine m = Machines.Create();
        SimProcess p = m.CreateProcess("t");

        Assert.That(p.Mmap(0, 0, RW, Anon), Is.EqualTo(EINVAL), "zero length");
        Assert.That(p.Mmap(0, 4096, RW, MapFlags.MAP_ANONYMOUS), Is.EqualTo(EINVAL), "neither shared nor private");
        Assert.That(p.Mmap(0, 4096, RW, Anon, offset: 100), Is.EqualTo(EINVAL), "unaligned offset");
        Assert.That(p.Mmap(0x10001000 + 1, 4096, RW, Anon | MapFlags.MAP_FIXED), Is.EqualTo(EINVAL), "unaligned fixed address");
        Assert.That(p.Mmap(0, 4096, RW, MapFlags.MAP_PRIVATE, fd: 99), Is.EqualTo(Errno.EBADF.Negative()));
        Assert.That(p.Mmap(0, 2 << 20, RW, Anon | MapFlags.MAP_HUGETLB), Is.EqualTo(EINVAL), "no 2 MiB pool");
        Assert.That(p.Mmap(0, ulong.MaxValue - 10, RW, Anon), Is.EqualTo(ENOMEM));
        Assert.That(p.Mm.Vmas, Is.Empty, "a rejected mmap maps nothing");
    }

    // The order below was read off Linux 6.1 with probes that combine two faults each.
    [Test]
    public void Mmap_ChecksInTheKernelsOrder()
    {
        SimMachine m = Machines.Create(ramGiB: 4, huge2M: 2);
        var dev = new CountingMisc(m);
        SimProcess p = m.CreateProcess("t", Credentials.User, new ResourceLimits { MemlockBytes = 4096 });
        int rw = p.Open(dev.NodePath);
        int wo = p.Open(dev.NodePath, OpenFlags.O_WRONLY);
        SimProcess root = m.CreateProcess("root");
        int probe = root.SendFd(root.Open("/sys/bus/pci/drivers_probe", OpenFlags.O_WRONLY), p);
        int efd = p.Eventfd(0);
        const MapFlags NoType = MapFlags.MAP_ANONYMOUS;
        long EBADF = Errno.EBADF.Negative(), EACCES = Errno.EACCES.Negative(), EOVERFLOW = Errno.EOVERFLOW.Negative();

        Assert.That(p.Mmap(0, 0, RW, MapFlags.MAP_PRIVATE, fd: 99), Is.EqualTo(EBADF), "the fd before the length");
        Assert.That(p.Mmap(0, 4096, RW, MapFlags.None, fd: 99), Is.EqualTo(EBADF), "the fd before the type");
        Assert.That(p.Mmap(0, 4096, RW, MapFlags.MAP_PRIVATE, fd: 99, offset: 100), Is.EqualTo(EINVAL), "the offset before the fd");
        Assert.That(p.Mmap(0, 0, RW, Anon | MapFlags.MAP_HUGETLB | (MapFlags)(13 << 26)), Is.EqualTo(EINVAL), "no pool of that size");
        Assert.That(p.Mmap(0, 4096, RW, MapFlags.MAP_PRIVATE | MapFlags.MAP_HUGETLB, rw), Is.EqualTo(EINVAL), "MAP_HUGETLB on a device");
        Assert.That(p.Mmap(0, ulong.MaxValue - 10, RW, NoType), Is.EqualTo(ENOMEM), "the length before the type");
        Assert.That(p.Mmap(0, 1UL << 47, RW, NoType), Is.EqualTo(ENOMEM), "longer than TASK_SIZE");
        Assert.That(p.Mmap(0xffff_ffff_ffff_f000, 4096, RW, Anon | MapFlags.MAP_FIXED), Is.EqualTo(ENOMEM), "a fixed range past TASK_SIZE");
        Assert.That(p.Mmap(0x1000, 4096, RW, NoType | MapFlags.MAP_FIXED), Is.EqualTo(Errno.EPERM.Negative()), "below mmap_min_addr without CAP_SYS_RAWIO, before the type");
        Assert.That(p.Mmap(0x1000, 4096, RW, Anon), Is.GreaterThanOrEqualTo((long)MmStruct.MmapMinAddr), "a low hint is only a hint");
        Assert.That(p.Mmap(0x7000_1000, 2 << 20, RW, Anon | MapFlags.MAP_HUGETLB | MapFlags.MAP_FIXED), Is.EqualTo(EINVAL), "a fixed huge mapping off a huge page");
        Assert.That(p.Mmap(0xffff_ffff_fff0_1000, 2 << 20, RW, Anon | MapFlags.MAP_HUGETLB | MapFlags.MAP_FIXED), Is.EqualTo(EINVAL), "hugetlb alignment before the end");

        ulong low = (ulong)p.Mmap(0x6000_0000, 4096, RW, Anon | MapFlags.MAP_FIXED);
        Assert.That(p.Mmap(low, 8192, RW, Anon | MapFlags.MAP_FIXED_NOREPLACE | MapFlags.MAP_LOCKED), Is.EqualTo(Errno.EEXIST.Negative()), "EEXIST before the mlock limit");
        Assert.That(p.Mmap(0, 8192, RW, NoType | MapFlags.MAP_LOCKED), Is.EqualTo(Errno.EAGAIN.Negative()), "the mlock limit before the type");
        Assert.That(p.Mmap(0, 8192, RW, MapFlags.MAP_SHARED | MapFlags.MAP_LOCKED, probe), Is.EqualTo(Errno.EAGAIN.Negative()), "and before the file's mode");
        Assert.That(p.Mmap(0, 4096, RW, MapFlags.MAP_SHARED_VALIDATE | MapFlags.MAP_ANONYMOUS), Is.EqualTo(EINVAL), "anonymous memory takes no MAP_SHARED_VALIDATE");

        Assert.That(p.Mmap(0, 8192, RW, MapFlags.MAP_SHARED, wo, offset: -4096), Is.EqualTo(EOVERFLOW), "file_mmap_ok() before the file's mode");
        Assert.That(p.Mmap(0x5000_0000, 4096, Prot.PROT_READ, MapFlags.MAP_SHARED_VALIDATE | MapFlags.MAP_FIXED_NOREPLACE, wo), Is.EqualTo(Errno.EOPNOTSUPP.Negative()), "MAP_SHARED_VALIDATE refuses flags outside LEGACY_MAP_MASK, before the file's mode");
        Assert.That(p.Mmap(0, 4096, Prot.PROT_NONE, MapFlags.MAP_SHARED, wo), Is.EqualTo(EACCES), "a file not open for reading, whatever the protection");
        Assert.That(p.Mmap(0, 4096, Prot.PROT_WRITE, MapFlags.MAP_PRIVATE, wo), Is.EqualTo(EACCES));
        Assert.That(p.Mmap(0, 4096, Prot.PROT_READ, MapFlags.MAP_SHARED, probe), Is.EqualTo(EACCES), "EACCES before ENODEV");
        Assert.That(p.Mmap(0, 4096, Prot.PROT_READ, MapFlags.MAP_SHARED, efd), Is.EqualTo(Errno.ENODEV.Negative()));
        Assert.That(p.Mmap(0, 4096, Prot.PROT_READ, MapFlags.None, wo), Is.EqualTo(EINVAL), "a file mapping of no type");
        Assert.That(p.Mmap(0, 4096, RW, MapFlags.MAP_SHARED | (MapFlags)0x800000, rw), Is.GreaterThan(0), "MAP_SHARED ignores unknown flags");
        Assert.That(p.Mmap(0, 8192, RW, MapFlags.MAP_SHARED, rw, offset: -(1L << 62)), Is.GreaterThan(0), "a device file may use any offset");
        Assert.That(dev.Releases, Is.Zero, "no rejected mmap dropped a reference it did not take");
    }

    [Test]
    public void FailedFixedMmap_LeavesTheRangeAsLinuxDoes()
    {
        SimMachine m = Machines.Create(ramGiB: 4, huge2M: 2);
        var dev = new CountingMisc(m);
        SimProcess p = m.CreateProcess("t");
        int fd = p.Open(dev.NodePath);
        int efd = p.Eventfd(0);
        ulong a = (ulong)p.Mmap(0x3000_0000, 8192, RW, Anon | MapFlags.MAP_FIXED);
        Assert.That(p.Mm.WriteUser(a, "x"u8), Is.Zero);
        Assert.That(p.Mm.WriteUser(a + 4096, "y"u8), Is.Zero);
        long usedBefore = m.Memory.UsedPages;

        Assert.That(p.Mmap(a + 4096, 4096, RW, MapFlags.MAP_SHARED | MapFlags.MAP_FIXED, efd), Is.EqualTo(Errno.ENODEV.Negative()));
        Assert.That(p.Mmap(a, 8192, RW, Anon | MapFlags.MAP_FIXED_NOREPLACE), Is.EqualTo(Errno.EEXIST.Negative()));
        Assert.That(p.Mm.Vmas, Has.Count.EqualTo(1), "checks that fail before the old range is unmapped leave it whole");

        // Past those checks the old range is gone before the driver's mmap runs; when that
        // fails the range stays empty (Linux 6.1; 6.12 restores anonymous vmas only when
        // no file's mmap ran).
        Assert.That(p.Mmap(a, 4096, RW, MapFlags.MAP_PRIVATE | MapFlags.MAP_FIXED, fd), Is.EqualTo(EINVAL), "the driver refuses private mappings");
        Assert.That(p.Mm.FindVma(a), Is.Null);
        Assert.That(m.Memory.UsedPages, Is.EqualTo(usedBefore - 1), "the old page was freed, not leaked");
        MemoryInvariants.Assert(m);
        byte[] b = new byte[1];
        Assert.That(p.Mm.ReadUser(a + 4096, b), Is.Zero);
        Assert.That(b[0], Is.EqualTo((byte)'y'), "the page outside the range is untouched");
        SimFile file = p.Files.Get(fd)!;
        Assert.That(file.ReferenceCount, Is.EqualTo(2), "the table's and this fget's: the failed mmap dropped the reference it took");
        file.Put();

        Assert.That(p.Mmap(a - (2 << 20) + 4096, 6 << 20, RW, Anon | MapFlags.MAP_HUGETLB | MapFlags.MAP_FIXED), Is.EqualTo(EINVAL), "misaligned for huge pages");
        ulong h = 0x4000_0000;
        Assert.That(p.Mmap(h + (2 << 20), 4096, RW, Anon | MapFlags.MAP_FIXED), Is.EqualTo((long)(h + (2 << 20))));
        Assert.That(p.Mmap(h, 6 << 20, RW, Anon | MapFlags.MAP_HUGETLB | MapFlags.MAP_FIXED), Is.EqualTo(ENOMEM), "three huge pages from a pool of two");
        Assert.That(p.Mm.FindVma(h + (2 << 20)), Is.Null, "the reservation failed after the old range was unmapped");
        Assert.That(m.Memory.HugePagesFree(2L << 20), Is.EqualTo(2), "and reserved nothing");
    }

    [Test]
    public void Mmap_PlacesMappingsTopDown_AndHonoursFixedAddresses()
    {
        SimMachine m = Machines.Create();
        SimProcess p = m.CreateProcess("t");
        long a = p.Mmap(0, 8192, RW, Anon);
        long b = p.Mmap(0, 4096, RW, Anon);
        long fixedAt = p.Mmap(0x20000000, 4096, Prot.PROT_READ, Anon | MapFlags.MAP_FIXED);

        Assert.That((ulong)a, Is.LessThanOrEqualTo(MmStruct.MmapBase - 8192));
        Assert.That(b, Is.LessThan(a));
        Assert.That(fixedAt, Is.EqualTo(0x20000000));
        Assert.That(p.Mmap(0x20000000, 4096, RW, Anon | MapFlags.MAP_FIXED_NOREPLACE), Is.EqualTo(Errno.EEXIST.Negative()));
        Assert.That(p.Mm.Vmas.Select(v => v.ToString()), Does.Contain($"{fixedAt:x12}-{fixedAt + 4096:x12} r--p anon"));
    }

    [Test]
    public void AReadFaultMapsTheZeroPage_AndAWriteGivesAPrivateFrame()
    {
        SimMachine m = Machines.Create();
        SimProcess p = m.CreateProcess("t");
        ulong a = (ulong)p.Mmap(0, 8192, RW, Anon);
        byte[] buf = new byte[8];

        Assert.That(p.Mm.ReadUser(a, buf), Is.Zero);
        Assert.That(buf, Is.All.Zero);
        Assert.That(p.Mm.Translate(a), Is.EqualTo(m.Memory.ZeroPfn));
        Assert.That(p.Mm.WriteUser(a + 4, "abcd"u8), Is.Zero);
        Assert.That(p.Mm.Translate(a), Is.Not.EqualTo(m.Memory.ZeroPfn));
        Assert.That(p.Mm.ReadUser(a, buf), Is.Zero);
        Assert.That(buf.AsSpan(4).ToArray(), Is.EqualTo("abcd"u8.ToArray()));
        Assert.That(p.Mm.Translate(a + 4096), Is.EqualTo(-1), "the second page was never touched");
        MemoryInvariants.Assert(m);
    }

    [Test]
    public void UserAccess_IsEfaultOnHolesAndOnWritesToReadOnlyPages()
    {
        SimMachine m = Machines.Create();
        SimProcess p = m.CreateProcess("t");
        ulong ro = (ulong)p.Mmap(0, 4096, Prot.PROT_READ, Anon);
        byte[] buf = new byte[16];

        Assert.That(p.Mm.ReadUser(ro, buf), Is.Zero);
        Assert.That(p.Mm.WriteUser(ro, buf), Is.EqualTo(EFAULT));
        Assert.That(p.Mm.ReadUser(0x1000, buf), Is.EqualTo(EFAULT));
        Assert.That(p.Mm.ReadUser(ro + 4090, buf), Is.EqualTo(EFAULT), "crosses into unmapped memory");
        Assert.That(p.Mprotect(ro, 4096, RW), Is.Zero);
        Assert.That(p.Mm.WriteUser(ro, buf), Is.Zero);
        Assert.That(p.Mprotect(ro + 8192, 4096, RW), Is.EqualTo(ENOMEM), "mprotect of a hole");
    }

    [Test]
    public void Munmap_FreesTheFrames_AndSplitsMappings()
    {
        SimMachine m = Machines.Create();
        SimProcess p = m.CreateProcess("t");
        long baseline = m.Memory.UsedPages;
        ulong a = (ulong)p.Mmap(0, 4 * 4096, RW, Anon | MapFlags.MAP_POPULATE);
        Assert.That(m.Memory.UsedPages, Is.EqualTo(baseline + 4));

        Assert.That(p.Munmap(a + 4096, 4096), Is.Zero);
        Assert.That(p.Mm.Vmas, Has.Count.EqualTo(2));
        Assert.That(m.Memory.UsedPages, Is.EqualTo(baseline + 3));
        Assert.That(p.Munmap(a + 1, 4096), Is.EqualTo(EINVAL));
        Assert.That(p.Munmap(a, 0), Is.EqualTo(EINVAL));
        Assert.That(p.Munmap(a, 4 * 4096), Is.Zero);
        Assert.That(m.Memory.UsedPages, Is.EqualTo(baseline));
        Assert.That(p.Munmap(a, 4 * 4096), Is.Zero, "unmapping nothing succeeds");
        MemoryInvariants.Assert(m);
    }

    [Test]
    public void Hugetlb_ReservesAtMmap_FaultsWholePages_AndRefusesSplits()
    {
        SimMachine m = Machines.Create(ramGiB: 4, huge2M: 4);
        SimProcess p = m.CreateProcess("t");
        long a = p.Mmap(0, 3 << 20, RW, Anon | MapFlags.MAP_HUGETLB | MapFlags.MAP_HUGE_2MB);

        Assert.That(a % (2 << 20), Is.Zero, "placed on a huge page boundary");
        Assert.That(p.Mm.Vmas.Single().Length, Is.EqualTo(4UL << 20), "length rounds up to whole huge pages");
        Assert.That(p.Mmap(0, 6 << 20, RW, Anon | MapFlags.MAP_HUGETLB), Is.EqualTo(ENOMEM), "only 2 unreserved pages are left");
        Assert.That(m.Memory.HugePagesFree(2L << 20), Is.EqualTo(4), "reservations do not allocate");

        Assert.That(p.Mm.WriteUser((ulong)a + (3 << 20), "x"u8), Is.Zero);
        Assert.That(m.Memory.HugePagesFree(2L << 20), Is.EqualTo(3));
        Assert.That(p.Munmap((ulong)a + 4096, 4096), Is.EqualTo(EINVAL), "cannot split a huge page");
        Assert.That(p.Munmap((ulong)a, 4UL << 20), Is.Zero);
        Assert.That(m.Memory.HugePagesFree(2L << 20), Is.EqualTo(4));
        MemoryInvariants.Assert(m);
    }

    [Test]
    public void Mlock_ChargesLockedVm_UpToTheRlimit()
    {
        SimMachine m = Machines.Create();
        SimProcess p = m.CreateProcess("t", Credentials.User, new ResourceLimits { MemlockBytes = 64 << 10 });
        ulong a = (ulong)p.Mmap(0, 32 << 10, RW, Anon);
        ulong b = (ulong)p.Mmap(0, 64 << 10, RW, Anon);

        Assert.That(p.Mlock(a, 32 << 10), Is.Zero);
        Assert.That(p.Mm.LockedVm, Is.EqualTo(8));
        Assert.That(p.Mm.Translate(a + 8192), Is.GreaterThan(0), "mlock populates");
        Assert.That(p.Mlock(a, 32 << 10), Is.Zero, "relocking is free");
        Assert.That(p.Mlock(b, 64 << 10), Is.EqualTo(ENOMEM), "8 + 16 pages exceed 16");
        Assert.That(p.Mm.LockedVm, Is.EqualTo(8), "a refused mlock charges nothing");
        Assert.That(p.Mlock(0x1000, 4096), Is.EqualTo(ENOMEM), "a hole");
        Assert.That(p.Munlock(a, 16 << 10), Is.Zero);
        Assert.That(p.Mm.LockedVm, Is.EqualTo(4));
        Assert.That(p.Munmap(a, 32 << 10), Is.Zero);
        Assert.That(p.Mm.LockedVm, Is.Zero, "unmapping locked memory uncharges it");

        SimProcess noLimit = m.CreateProcess("t2", Credentials.User, new ResourceLimits { MemlockBytes = 0 });
        ulong c = (ulong)noLimit.Mmap(0, 4096, RW, Anon);
        Assert.That(noLimit.Mlock(c, 4096), Is.EqualTo(Errno.EPERM.Negative()));
        noLimit.Credentials = Credentials.User.With(Capabilities.CAP_IPC_LOCK);
        Assert.That(noLimit.Mlock(c, 4096), Is.Zero, "CAP_IPC_LOCK bypasses RLIMIT_MEMLOCK");
        Assert.That(noLimit.Mmap(0, 4096, RW, Anon | MapFlags.MAP_LOCKED), Is.GreaterThan(0));
        Assert.That(p.Mmap(0, 1 << 20, RW, Anon | MapFlags.MAP_LOCKED), Is.EqualTo(Errno.EAGAIN.Negative()));
    }

    [Test]
    public void AccountLockedVm_EnforcesTheTasksLimit_UnlessBypassed()
    {
        SimMachine m = Machines.Create();
        SimProcess p = m.CreateProcess("t", Credentials.User, new ResourceLimits { MemlockBytes = 40960 });

        Assert.That(p.Mm.AccountLockedVm(8, inc: true, p), Is.Zero);
        Assert.That(p.Mm.AccountLockedVm(3, inc: true, p), Is.EqualTo(ENOMEM));
        Assert.That(p.Mm.LockedVm, Is.EqualTo(8));
        p.Credentials = p.Credentials.With(Capabilities.CAP_IPC_LOCK);
        Assert.That(p.Mm.AccountLockedVm(3, inc: true, p), Is.Zero);
        Assert.That(p.Mm.AccountLockedVm(11, inc: false, p), Is.Zero);
        Assert.That(p.Mm.LockedVm, Is.Zero);
    }

    [Test]
    public void Fork_CopiesPrivateMemory_SharesSharedMemory_AndDropsLocks()
    {
        SimMachine m = Machines.Create();
        SimProcess parent = m.CreateProcess("parent", limits: new ResourceLimits { MemlockBytes = 1 << 20 });
        ulong priv = (ulong)parent.Mmap(0, 4096, RW, Anon);
        ulong shared = (ulong)parent.Mmap(0, 4096, RW, MapFlags.MAP_SHARED | MapFlags.MAP_ANONYMOUS);
        parent.Mm.WriteUser(priv, "parent"u8);
        parent.Mm.WriteUser(shared, "before"u8);
        parent.Mlock(priv, 4096);

        Assert.That(parent.Fork(out SimProcess? child), Is.GreaterThan(1));
        child!.Mm.WriteUser(priv, "child!"u8);
        child.Mm.WriteUser(shared, "after!"u8);
        byte[] buf = new byte[6];

        parent.Mm.ReadUser(priv, buf);
        Assert.That(buf, Is.EqualTo("parent"u8.ToArray()));
        parent.Mm.ReadUser(shared, buf);
        Assert.That(buf, Is.EqualTo("after!"u8.ToArray()));
        Assert.That(child.Mm.LockedVm, Is.Zero, "memory locks are not inherited");
        Assert.That(parent.Mm.LockedVm, Is.EqualTo(1));
        MemoryInvariants.Assert(m);

        long used = m.Memory.UsedPages;
        child.Exit();
        Assert.That(m.Memory.UsedPages, Is.EqualTo(used - 1), "the child's private copy is freed; the shared page stays");
        MemoryInvariants.Assert(m);
    }

    [Test]
    public void AForkThatCannotCopyHugePages_FailsWithEnomem_AndLeavesNothingBehind()
    {
        SimMachine m = Machines.Create(ramGiB: 4, huge2M: 3);
        SimProcess parent = m.CreateProcess("parent");
        ulong a = (ulong)parent.Mmap(0, 4 << 20, RW, Anon | MapFlags.MAP_HUGETLB);
        parent.Mm.WriteUser(a, "x"u8);
        parent.Mm.WriteUser(a + (2 << 20), "y"u8);
        MemorySnapshot before = MemorySnapshot.Take(m);
        int processes = m.Processes.Count;

        int ret = parent.Fork(out SimProcess? child);

        Assert.That(ret, Is.EqualTo(ENOMEM), "the child needs 2 private huge pages; 1 is left");
        Assert.That(child, Is.Null);
        Assert.That(m.Processes, Has.Count.EqualTo(processes));
        Assert.That(MemorySnapshot.Take(m).SameAs(before), Is.True, MemorySnapshot.Take(m) + " vs " + before);
        MemoryInvariants.Assert(m);
    }

    [Test]
    public void ExitTearsTheAddressSpaceDown()
    {
        SimMachine m = Machines.Create();
        long baseline = m.Memory.UsedPages;
        SimProcess p = m.CreateProcess("t");
        ulong a = (ulong)p.Mmap(0, 1 << 20, RW, Anon | MapFlags.MAP_POPULATE);
        Assert.That(m.Memory.UsedPages, Is.EqualTo(baseline + 256));

        p.Exit();

        Assert.That(m.Memory.UsedPages, Is.EqualTo(baseline));
        Assert.That(p.Mm.IsDead, Is.True);
        Assert.That(m.FindProcess(p.Pid), Is.Null);
        Assert.That(() => p.Mmap(a, 4096, RW, Anon), Throws.InvalidOperationException.With.Message.Contains("has exited"));
    }

    [Test]
    public void Exit_TearsTheAddressSpaceDown_BeforeItClosesTheFiles()
    {
        SimMachine m = Machines.Create();
        var dev = new CountingMisc(m);
        SimProcess p = m.CreateProcess("t");
        bool? mmDeadAtRelease = null;
        dev.OnRelease = _ => mmDeadAtRelease = p.Mm.IsDead;
        Assert.That(p.Open(dev.NodePath), Is.GreaterThanOrEqualTo(0));

        p.Exit();

        Assert.That(dev.Releases, Is.EqualTo(1));
        Assert.That(mmDeadAtRelease, Is.True, "exit_mm() runs before exit_files()");
    }

    [Test]
    public void Exit_KeepsTheLockedVmThatADriverCharged_AndDropsOnlyTheMlockedShare()
    {
        SimMachine m = Machines.Create();
        SimProcess p = m.CreateProcess("t", limits: new ResourceLimits { MemlockBytes = 1 << 20 });
        ulong a = (ulong)p.Mmap(0, 4 * 4096, RW, Anon);
        Assert.That(p.Mlock(a, 4 * 4096), Is.Zero);
        Assert.That(p.Mm.AccountLockedVm(10, inc: true, p), Is.Zero, "what a driver such as type1 charges");
        Assert.That(p.Mm.LockedVm, Is.EqualTo(14));

        p.Exit();

        Assert.That(p.Mm.LockedVm, Is.EqualTo(10), "the driver's charge stays until the driver uncharges it");
        Assert.That(p.Mm.AccountLockedVm(10, inc: false, p), Is.Zero);
        Assert.That(p.Mm.LockedVm, Is.Zero);
        Assert.That(m.Kernel.Warnings, Is.Empty, "no locked_vm underflow");
    }

    [Test]
    public void AnMmapInFlightWhenTheProcessExits_FailsAndMapsNothing()
    {
        SimMachine m = Machines.Create();
        SimProcess p = m.CreateProcess("t");
        long used = m.Memory.UsedPages;

        p.Exit();

        // A sibling thread that entered mmap() before exit_group() reaches the mm itself.
        long ret = p.Mm.Mmap(0, 4096, RW, Anon | MapFlags.MAP_POPULATE, null, 0, p);
        Assert.That(ret, Is.EqualTo(Errno.EINTR.Negative()));
        Assert.That(p.Mm.Vmas, Is.Empty);
        Assert.That(m.Memory.UsedPages, Is.EqualTo(used));
        MemoryInvariants.Assert(m);
    }

    [Test]
    public void AFileInstalledAtAReservedFdAfterExit_IsReleased_AndTheTableTakesNoNewFd()
    {
        SimMachine m = Machines.Create();
        var dev = new CountingMisc(m);
        SimProcess p = m.CreateProcess("t");
        SimProcess opener = m.CreateProcess("opener");
        int fd = p.GetUnusedFd(cloexec: false);
        Assert.That(fd, Is.GreaterThanOrEqualTo(0));
        int ofd = opener.Open(dev.NodePath);
        SimFile file = opener.Files.Get(ofd)!;

        p.Exit(); // A sibling thread is between get_unused_fd_flags() and fd_install().
        p.FdInstall(fd, file);
        Assert.That(p.GetUnusedFd(cloexec: false), Is.EqualTo(Errno.EINTR.Negative()));
        Assert.That(opener.SendFd(ofd, p), Is.EqualTo(Errno.EINTR.Negative()));
        Assert.That(dev.Releases, Is.Zero, "opener still holds the file");
        opener.Close(ofd);

        Assert.That(dev.Releases, Is.EqualTo(1), "the references given to the closed table were dropped");
    }

    [Test]
    public void HugetlbMappings_AreNeverMlocked_NorCharged_NorSplitByMlock()
    {
        SimMachine m = Machines.Create(huge2M: 4);
        SimProcess p = m.CreateProcess("t", Credentials.User, new ResourceLimits { MemlockBytes = 16L << 20 });
        ulong a = (ulong)p.Mmap(0, 4 << 20, RW, Anon | MapFlags.MAP_HUGETLB | MapFlags.MAP_LOCKED);

        Assert.That(p.Mm.Vmas.Single().Flags & VmFlags.VM_LOCKED, Is.EqualTo((VmFlags)0), "mmap_region() clears VM_LOCKED on hugetlb");
        Assert.That(p.Mm.LockedVm, Is.Zero);
        Assert.That(m.Memory.HugePagesFree(2L << 20), Is.EqualTo(2), "MAP_LOCKED still populates");

        Assert.That(p.Mlock(a + 4096, 4096), Is.Zero, "mlock_fixup() skips hugetlb, so an unaligned range is no split");
        Assert.That(p.Munlock(a + 4096, 4096), Is.Zero);
        Assert.That(p.Mm.Vmas, Has.Count.EqualTo(1));
        Assert.That(p.Mm.LockedVm, Is.Zero);
        MemoryInvariants.Assert(m);
    }

    [Test]
    public void TheMlockLimit_CountsTheWholeLength_LessWhatIsAlreadyLocked()
    {
        SimMachine m = Machines.Create();
        var dev = new CountingMisc(m);
        SimProcess p = m.CreateProcess("t", Credentials.User, new ResourceLimits { MemlockBytes = 4 * 4096 });
        int fd = p.Open(dev.NodePath);
        ulong bar = (ulong)p.Mmap(0, 8 * 4096, RW, MapFlags.MAP_SHARED, fd);
        ulong a = (ulong)p.Mmap(0, 4 * 4096, RW, Anon);

        Assert.That(p.Mlock(bar, 8 * 4096), Is.EqualTo(ENOMEM), "do_mlock() counts VM_PFNMAP pages against the limit");
        Assert.That(p.Mlock(bar, 4 * 4096), Is.Zero, "within the limit; nothing is locked or charged");
        Assert.That(p.Mm.LockedVm, Is.Zero);
        Assert.That(p.Mlock(a, 4 * 4096), Is.Zero);
        Assert.That(p.Mlock(a, 4 * 4096), Is.Zero, "4 + 4 is over the limit, less the 4 already locked in the range");
        Assert.That(p.Mm.LockedVm, Is.EqualTo(4));
    }

    [Test]
    public void MprotectMlockAndMunlock_SplitOnlyTheVmasWhoseFlagsChange()
    {
        SimMachine m = Machines.Create(huge2M: 2);
        SimProcess p = m.CreateProcess("t", limits: new ResourceLimits { MemlockBytes = 1 << 20 });
        ulong a = (ulong)p.Mmap(0, 4 * 4096, RW, Anon);
        ulong h = (ulong)p.Mmap(0, 4 << 20, RW, Anon | MapFlags.MAP_HUGETLB);
        int Count(ulong start, ulong end) => p.Mm.Vmas.Count(v => v.Start >= start && v.End <= end);

        Assert.That(p.Mprotect(a + 4096, 4096, Prot.PROT_READ | Prot.PROT_WRITE), Is.Zero);
        Assert.That(p.Munlock(a + 4096, 4096), Is.Zero);
        Assert.That(Count(a, a + (4 * 4096)), Is.EqualTo(1), "newflags == oldflags: nothing to split");
        Assert.That(p.Mlock(a, 4 * 4096), Is.Zero);
        Assert.That(p.Mlock(a + 4096, 4096), Is.Zero);
        Assert.That(Count(a, a + (4 * 4096)), Is.EqualTo(1));
        Assert.That(p.Mprotect(a + 4096, 4096, Prot.PROT_READ), Is.Zero);
        Assert.That(Count(a, a + (4 * 4096)), Is.EqualTo(3), "a real change splits");

        Assert.That(p.Mprotect(h + 4096, 4096, Prot.PROT_READ | Prot.PROT_WRITE), Is.Zero, "no change, so no hugetlb split to refuse");
        Assert.That(p.Mprotect(h + 4096, 4096, Prot.PROT_READ), Is.EqualTo(EINVAL), "a change would split a huge page");
        Assert.That(Count(h, h + (4 << 20)), Is.EqualTo(1));
        Assert.That(p.Mm.LockedVm, Is.EqualTo(4));
    }

    [Test]
    public void PopulateAndMlock_DoNotFaultDeviceMappings()
    {
        SimMachine m = Machines.Create();
        var dev = new CountingMisc(m);
        SimProcess p = m.CreateProcess("t", limits: new ResourceLimits { MemlockBytes = 1 << 20 });
        int fd = p.Open(dev.NodePath);

        ulong bar = (ulong)p.Mmap(0, 4 * 4096, RW, MapFlags.MAP_SHARED | MapFlags.MAP_POPULATE | MapFlags.MAP_LOCKED, fd);
        Assert.That(p.Mlock(bar, 4 * 4096), Is.Zero);

        Assert.That(dev.Faults, Is.Zero, "__mm_populate() skips VM_IO/VM_PFNMAP VMAs");
        Assert.That(p.Mm.Translate(bar), Is.EqualTo(-1));
        Assert.That(p.Mm.LockedVm, Is.Zero);
        Span<byte> one = stackalloc byte[1];
        Assert.That(p.Mm.ReadUser(bar, one), Is.Zero);
        Assert.That(dev.Faults, Is.EqualTo(1), "a real access still faults the page in");
    }

    [Test]
    public void Munmap_ValidatesTheLengthBeforeRoundingIt()
    {
        SimMachine m = Machines.Create();
        SimProcess p = m.CreateProcess("t");
        ulong a = (ulong)p.Mmap(0, 4096, RW, Anon);

        Assert.That(p.Munmap(a, ulong.MaxValue), Is.EqualTo(EINVAL), "len > TASK_SIZE - start (rounding would wrap it to 0)");
        Assert.That(p.Munmap(a, MmStruct.TaskSize - a + 1), Is.EqualTo(EINVAL));
        Assert.That(p.Munmap(MmStruct.TaskSize + 4096, 4096), Is.EqualTo(EINVAL), "start > TASK_SIZE");
        Assert.That(p.Munmap(a, 0), Is.EqualTo(EINVAL));
        Assert.That(p.Mm.Translate(a) is -1 && p.Mm.FindVma(a) is not null, Is.True, "nothing was unmapped");
        Assert.That(p.Munmap(MmStruct.TaskSize - 4096, 4096), Is.Zero, "the last page below TASK_SIZE");
    }

    [Test]
    public void Mprotect_ChecksInDoMprotectPkeysOrder()
    {
        SimMachine m = Machines.Create();
        var dev = new CountingMisc(m);
        SimProcess p = m.CreateProcess("t");
        ulong a = (ulong)p.Mmap(0, 2 * 4096, RW, Anon);
        const ulong fixedAt = 0x1000_0000;
        int ro = p.Open(dev.NodePath, OpenFlags.O_RDONLY);
        Assert.That(p.Mmap(fixedAt, 4096, Prot.PROT_READ, MapFlags.MAP_SHARED | MapFlags.MAP_FIXED, ro), Is.EqualTo((long)fixedAt));
        long EACCES = Errno.EACCES.Negative();
        const Prot bad = (Prot)0x10;

        Assert.That(p.Mprotect(a + 1, 4096, Prot.PROT_GROWSDOWN | Prot.PROT_GROWSUP), Is.EqualTo(EINVAL), "both grow directions first");
        Assert.That(p.Mprotect(a + 1, 0, bad), Is.EqualTo(EINVAL), "then the alignment");
        Assert.That(p.Mprotect(a, 0, bad), Is.Zero, "then a zero length");
        Assert.That(p.Mprotect(a, ulong.MaxValue, bad), Is.EqualTo(ENOMEM), "then a range that wraps once aligned");
        Assert.That(p.Mprotect(a, 4096, bad), Is.EqualTo(EINVAL), "then arch_validate_prot()");
        Assert.That(p.Mprotect(0x2000, 4096, Prot.PROT_READ | Prot.PROT_GROWSUP), Is.EqualTo(ENOMEM), "then no mapping");
        Assert.That(p.Mprotect(a, 4096, Prot.PROT_READ | Prot.PROT_GROWSDOWN), Is.EqualTo(EINVAL), "a mapping that does not grow");
        Assert.That(p.Mprotect(a, 4096, Prot.PROT_READ | Prot.PROT_SEM), Is.Zero, "PROT_SEM is accepted");
        Assert.That(p.Mprotect(fixedAt, 2 * 4096, RW), Is.EqualTo(EACCES), "the first VMA's EACCES comes before the hole after it");
        Assert.That(p.Mprotect(fixedAt - 4096, 2 * 4096, Prot.PROT_READ), Is.EqualTo(ENOMEM), "a hole at the start");
        Assert.That(p.Mprotect(a, 3 * 4096, Prot.PROT_READ), Is.EqualTo(ENOMEM), "a hole at the end");
        Assert.That(p.Mm.FindVma(a + 4096)!.Flags & VmFlags.VM_WRITE, Is.EqualTo(VmFlags.VM_WRITE), "a rejected call changed nothing");
    }

    [Test]
    public void OutOfMemoryWhileFaulting_IsEnomemForGup_EfaultForUserCopies_EagainForMlock()
    {
        SimMachine m = Machines.Create();
        SimProcess p = m.CreateProcess("t", limits: new ResourceLimits { MemlockBytes = 1 << 20 });
        ulong a = (ulong)p.Mmap(0, 4 * 4096, RW, Anon);
        var runs = new PfnRun[4];

        m.Kernel.Faults.FailNth(1, PhysMem.AllocPageFaultSite);
        Assert.That(p.Mm.PinUserPages(a, 1, GupFlags.FOLL_WRITE | GupFlags.FOLL_LONGTERM, runs, out _), Is.EqualTo(ENOMEM), "vm_fault_to_errno(VM_FAULT_OOM)");
        m.Kernel.Faults.FailNth(1, PhysMem.AllocPageFaultSite);
        Assert.That(p.Mm.WriteUser(a, "x"u8), Is.EqualTo(EFAULT), "a faulting copy_to_user is fixed up to -EFAULT");
        m.Kernel.Faults.FailNth(2, PhysMem.AllocPageFaultSite);
        Assert.That(p.Mlock(a, 4 * 4096), Is.EqualTo(Errno.EAGAIN.Negative()), "__mlock_posix_error_return(-ENOMEM)");
        Assert.That(p.Mm.LockedVm, Is.EqualTo(4), "as in the kernel, the VMAs stay locked");
        Assert.That(m.Kernel.Faults.Consumed, Is.True);
        MemoryInvariants.Assert(m);
    }

    [Test]
    public void AFailedFork_BurnsNoPid()
    {
        SimMachine m = Machines.Create(huge2M: 1);
        SimProcess parent = m.CreateProcess("parent");
        ulong a = (ulong)parent.Mmap(0, 2 << 20, RW, Anon | MapFlags.MAP_HUGETLB);
        Assert.That(parent.Mm.WriteUser(a, "x"u8), Is.Zero);

        Assert.That(parent.Fork(out _), Is.EqualTo(ENOMEM), "no huge page left for the child's private copy");
        Assert.That(parent.Munmap(a, 2 << 20), Is.Zero);
        int pid = parent.Fork(out SimProcess? child);

        Assert.That(pid, Is.EqualTo(parent.Pid + 1), "copy_process() allocates the pid after copy_mm()");
        Assert.That(child!.Mm.Id, Is.EqualTo(pid));
        Assert.That(child.Mm.MmapLock.Name, Is.EqualTo($"mm[{pid}].mmap_lock"));
    }
}
