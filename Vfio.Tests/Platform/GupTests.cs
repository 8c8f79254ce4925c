using NUnit.Framework;
using Vfio.Kernel;
using Vfio.Platform;
using Vfio.Platform.Mm;
using Vfio.Platform.Proc;

namespace Vfio.Tests.Platform;

public sealed class GupTests
{
    private const Prot RW = Prot.PROT_READ | Prot.PROT_WRITE;
    private const MapFlags Anon = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS;
    private const GupFlags LongtermWrite = GupFlags.FOLL_LONGTERM | GupFlags.FOLL_WRITE;

    private static (long Pinned, PfnRun[] Runs) Pin(SimProcess p, ulong addr, long pages, GupFlags flags = LongtermWrite, int maxRuns = 1 << 16)
    {
        var runs = new PfnRun[maxRuns];
        long n = p.Mm.PinUserPages(addr, pages, flags, runs, out int count);
        return (n, runs[..count]);
    }

    [Test]
    public void ScatteredAnonymousMemory_PinsAsOneRunPerPage()
    {
        SimMachine m = Machines.Create(policy: AllocationPolicy.Scattered);
        SimProcess p = m.CreateProcess("t");
        ulong a = (ulong)p.Mmap(0, 64 * 4096, RW, Anon | MapFlags.MAP_POPULATE);

        (long n, PfnRun[] runs) = Pin(p, a, 64);

        Assert.That(n, Is.EqualTo(64));
        Assert.That(runs, Has.Length.EqualTo(64));
        Assert.That(runs.Select(r => r.Count), Is.All.EqualTo(1));
        Assert.That(m.Memory.PinnedPages, Is.EqualTo(64));
        m.Memory.Unpin(runs, dirty: true);
        Assert.That(m.Memory.PinnedPages, Is.Zero);
    }

    [Test]
    public void ContiguousAnonymousMemory_PinsAsOneRun()
    {
        SimMachine m = Machines.Create(policy: AllocationPolicy.Contiguous);
        SimProcess p = m.CreateProcess("t");
        ulong a = (ulong)p.Mmap(0, 64 * 4096, RW, Anon);

        (long n, PfnRun[] runs) = Pin(p, a, 64);

        Assert.That(n, Is.EqualTo(64));
        Assert.That(runs, Has.Length.EqualTo(1));
        Assert.That(runs[0].Count, Is.EqualTo(64));
        m.Memory.Unpin(runs, dirty: false);
    }

    [Test]
    public void HugetlbMemory_PinsInWholeFolios_AndAdjacentHugePagesMergeIntoOneRun()
    {
        SimMachine m = Machines.Create(ramGiB: 8, huge2M: 4, huge1G: 1);
        SimProcess p = m.CreateProcess("t");
        ulong a = (ulong)p.Mmap(0, 8 << 20, RW, Anon | MapFlags.MAP_HUGETLB | MapFlags.MAP_HUGE_2MB);
        ulong g = (ulong)p.Mmap(0, 1 << 30, RW, Anon | MapFlags.MAP_HUGETLB | MapFlags.MAP_HUGE_1GB);

        (long n2, PfnRun[] r2) = Pin(p, a, 2048);
        (long n1, PfnRun[] r1) = Pin(p, g + (4 << 20), 512);

        Assert.That(n2, Is.EqualTo(2048));
        Assert.That(r2, Has.Length.EqualTo(1), "four 2 MiB pages from the pool are physically adjacent");
        Assert.That(m.Memory.PinCount(r2[0].Pfn), Is.EqualTo(512), "the folio counts each pinned subpage");
        Assert.That(m.Memory.RefCount(r2[0].Pfn), Is.EqualTo(513), "one mapping plus 512 pins");
        Assert.That(n1, Is.EqualTo(512));
        Assert.That(r1.Single().Pfn % PhysMem.PagesPer1G, Is.EqualTo(1024), "4 MiB into the 1 GiB page");

        m.Memory.Unpin(r2, dirty: true);
        m.Memory.Unpin(r1, dirty: true);
        Assert.That(m.Memory.PinnedPages, Is.Zero);
        Assert.That(m.Memory.RefCount(r2[0].Pfn), Is.EqualTo(1));
        Assert.That(m.Memory.IsDirty(r2[0].Pfn), Is.True);
        MemoryInvariants.Assert(m);
    }

    [Test]
    public void PinningFaultsPagesIn_AWritePinAllocates_AReadPinTakesTheZeroPage()
    {
        // Linux 6.1 only: from 6.2 a read-only long-term pin unshares the zero page (see below).
        SimMachine m = MachineOn(KernelProfile.Linux6_1);
        SimProcess p = m.CreateProcess("t");
        ulong a = (ulong)p.Mmap(0, 2 * 4096, RW, Anon);

        (long nr, PfnRun[] read) = Pin(p, a, 1, GupFlags.FOLL_LONGTERM);
        (long nw, PfnRun[] write) = Pin(p, a + 4096, 1);

        Assert.That(nr, Is.EqualTo(1));
        Assert.That(read[0].Pfn, Is.EqualTo(m.Memory.ZeroPfn));
        Assert.That(nw, Is.EqualTo(1));
        Assert.That(write[0].Pfn, Is.EqualTo(p.Mm.Translate(a + 4096)));
        Assert.That(m.Memory.RefCount(write[0].Pfn), Is.EqualTo(2));
        Assert.That(m.Memory.PinCount(write[0].Pfn), Is.EqualTo(1));
        m.Memory.Unpin(read, false);
        m.Memory.Unpin(write, false);
        MemoryInvariants.Assert(m);
    }

    [Test]
    public void APinAcrossPageTableChunks_PinsEachPageItsOwnFrameInOrder([Values] bool write)
    {
        // 1100 pages, every third read (the zero page), every third written, the rest never
        // touched; the pin starts at page 500 and crosses the page-table chunks at 512 and
        // 1024. A write pin faults every missing or zero page to a frame of its own; a
        // read-only long-term pin on 6.1 maps the untouched pages to the zero page and pins it.
        SimMachine m = write ? Machines.Create(policy: AllocationPolicy.Scattered) : MachineOn(KernelProfile.Linux6_1);
        SimProcess p = m.CreateProcess("t");
        const int Pages = 1100, First = 500, Count = 600;
        ulong a = (ulong)p.Mmap(0, Pages * 4096, RW, Anon);
        byte[] buf = [1];
        for (int i = 0; i < Pages; i++)
        {
            int ret = (i % 3) switch
            {
                0 => p.Mm.ReadUser(a + (ulong)(i * 4096), buf),
                1 => p.Mm.WriteUser(a + (ulong)(i * 4096), buf),
                _ => 0,
            };
            Assert.That(ret, Is.Zero);
        }

        ulong start = a + (First * 4096);
        (long n, PfnRun[] runs) = Pin(p, start, Count, write ? LongtermWrite : GupFlags.FOLL_LONGTERM);

        Assert.That(n, Is.EqualTo(Count));
        var pinned = new List<long>();
        foreach (PfnRun r in runs)
        {
            for (long k = 0; k < r.Count; k++)
            {
                pinned.Add(r.Pfn + k);
            }
        }

        var expected = new List<long>();
        for (int i = 0; i < Count; i++)
        {
            expected.Add(p.Mm.Translate(start + (ulong)(i * 4096)));
        }

        Assert.That(pinned, Is.EqualTo(expected));
        Assert.That(pinned.Count(pfn => pfn == m.Memory.ZeroPfn), Is.EqualTo(write ? 0 : Count - (Count / 3)), "pages read or never touched");
        foreach (long pfn in pinned.Where(pfn => pfn != m.Memory.ZeroPfn))
        {
            Assert.That(m.Memory.PinCount(pfn), Is.EqualTo(1));
        }

        m.Memory.Unpin(runs, dirty: write);
        MemoryInvariants.Assert(m);
    }

    [Test]
    public void AReadOnlyLongtermPin_UnsharesTheZeroPage_From6_2()
    {
        SimMachine m = MachineOn(KernelProfile.Linux6_12);
        SimProcess p = m.CreateProcess("t");
        ulong a = (ulong)p.Mmap(0, 2 * 4096, RW, Anon);
        Span<byte> one = stackalloc byte[1];
        Assert.That(p.Mm.ReadUser(a, one), Is.Zero);
        Assert.That(p.Mm.Translate(a), Is.EqualTo(m.Memory.ZeroPfn), "a read maps the zero page");

        (long n, PfnRun[] runs) = Pin(p, a, 2, GupFlags.FOLL_LONGTERM);
        (long nShort, PfnRun[] shortTerm) = Pin(p, a, 1, GupFlags.None);

        Assert.That(n, Is.EqualTo(2));
        Assert.That(runs.Any(r => r.Pfn <= m.Memory.ZeroPfn && m.Memory.ZeroPfn < r.End), Is.False, "no run covers the zero page");
        Assert.That(p.Mm.Translate(a), Is.Not.EqualTo(m.Memory.ZeroPfn), "the mapped zero page was replaced by a fresh page");
        Assert.That(m.Memory.PinCount(p.Mm.Translate(a)), Is.EqualTo(2), "the long-term pin and the later short-term pin share the fresh page");
        Assert.That(nShort, Is.EqualTo(1));
        m.Memory.Unpin(runs, false);
        m.Memory.Unpin(shortTerm, false);
        MemoryInvariants.Assert(m);
    }

    private static SimMachine MachineOn(KernelProfile profile)
        => new(new SimKernel(new KernelConfig { Profile = profile }), new MachineConfig
        {
            Memory = new MemoryConfig { RamBytes = 4L << 30 },
        });

    [Test]
    public void Holes_AreEfault_OnTheFirstPage_AndAPartialCountAfterwards()
    {
        SimMachine m = Machines.Create();
        SimProcess p = m.CreateProcess("t");
        ulong a = (ulong)p.Mmap(0, 4 * 4096, RW, Anon);
        p.Munmap(a + (2 * 4096), 2 * 4096);

        (long hole, _) = Pin(p, a + (2 * 4096), 2);
        (long partial, PfnRun[] runs) = Pin(p, a, 4);

        Assert.That(hole, Is.EqualTo(Errno.EFAULT.Negative()));
        Assert.That(partial, Is.EqualTo(2), "GUP returns the pages pinned before the hole");
        Assert.That(runs.Sum(r => r.Count), Is.EqualTo(2));
        m.Memory.Unpin(runs, false);
        Assert.That(m.Memory.PinnedPages, Is.Zero);
    }

    [Test]
    public void AWritePinOfReadOnlyMemory_IsEfault_AndChangesNothing()
    {
        SimMachine m = Machines.Create();
        SimProcess p = m.CreateProcess("t");
        ulong a = (ulong)p.Mmap(0, 4096, Prot.PROT_READ, Anon);
        MemorySnapshot before = MemorySnapshot.Take(m);

        (long n, _) = Pin(p, a, 1);

        Assert.That(n, Is.EqualTo(Errno.EFAULT.Negative()));
        Assert.That(MemorySnapshot.Take(m).SameAs(before), Is.True);
        Assert.That(Pin(p, a, 1, GupFlags.FOLL_LONGTERM | GupFlags.FOLL_WRITE | GupFlags.FOLL_FORCE).Pinned, Is.EqualTo(1), "FOLL_FORCE overrides");
    }

    [Test]
    public void PfnMapMemory_IsEfaultForGup_ButResolvesThroughThePageTableWalk()
    {
        SimMachine m = Machines.Create();
        var dev = new CountingMisc(m);
        SimProcess p = m.CreateProcess("t");
        int fd = p.Open(dev.NodePath);
        ulong bar = (ulong)p.Mmap(0, 4 * 4096, RW, MapFlags.MAP_SHARED, fd);
        ulong roBar = (ulong)p.Mmap(0, 4096, Prot.PROT_READ, MapFlags.MAP_SHARED, fd, 8192);

        Assert.That(Pin(p, bar, 1).Pinned, Is.EqualTo(Errno.EFAULT.Negative()));
        p.Mm.MmapLock.DownRead();
        int ok = p.Mm.FollowFaultPfnLocked(p.Mm.FindVmaLocked(bar + 4096)!, bar + 4096, write: true, out long pfn);
        int ro = p.Mm.FollowFaultPfnLocked(p.Mm.FindVmaLocked(roBar)!, roBar, write: true, out _);
        p.Mm.MmapLock.UpRead();

        Assert.That(ok, Is.Zero);
        Assert.That(pfn, Is.EqualTo((dev.MmioBase >> 12) + 1));
        Assert.That(m.Memory.IsInvalidOrReserved(pfn), Is.True, "device frames are not RAM");
        Assert.That(dev.Faults, Is.EqualTo(1));
        Assert.That(ro, Is.EqualTo(Errno.EFAULT.Negative()), "a write needs a writable mapping");
        Assert.That(p.Mmap(0, 4096, RW, MapFlags.MAP_PRIVATE, fd), Is.EqualTo(Errno.EINVAL.Negative()), "the driver refuses private mappings");

        p.Mm.WriteUser(bar + 16, "mmio"u8);
        Assert.That(dev.Registers.AsSpan(16, 4).ToArray(), Is.EqualTo("mmio"u8.ToArray()), "CPU stores through the mapping reach the device");
    }

    [Test]
    public void PinsSurviveMunmapAndExit_UntilUnpinned()
    {
        SimMachine m = Machines.Create();
        long baseline = m.Memory.UsedPages;
        SimProcess p = m.CreateProcess("t");
        ulong a = (ulong)p.Mmap(0, 16 * 4096, RW, Anon);
        (_, PfnRun[] runs) = Pin(p, a, 16);
        p.Mm.WriteUser(a, "kept"u8);

        p.Munmap(a, 8 * 4096);
        Assert.That(m.Memory.UsedPages, Is.EqualTo(baseline + 16), "unmapped but pinned frames stay allocated");
        p.Exit();
        Assert.That(m.Memory.UsedPages, Is.EqualTo(baseline + 16), "so do frames of an exited process");
        byte[] data = new byte[4];
        m.Memory.Read(runs[0].Pfn << 12, data);
        Assert.That(data, Is.EqualTo("kept"u8.ToArray()), "the device can still reach the data");
        MemoryInvariants.Assert(m);

        m.Memory.Unpin(runs, dirty: true);
        Assert.That(m.Memory.UsedPages, Is.EqualTo(baseline));
        Assert.That(m.Memory.PinnedPages, Is.Zero);
        Assert.That(m.Memory.PinsAcquired, Is.EqualTo(m.Memory.PinsReleased));
        MemoryInvariants.Assert(m);
    }

    [Test]
    public void AFullRunBuffer_EndsTheCallEarly_WithoutPinningTheRest()
    {
        SimMachine m = Machines.Create(policy: AllocationPolicy.Scattered);
        SimProcess p = m.CreateProcess("t");
        ulong a = (ulong)p.Mmap(0, 32 * 4096, RW, Anon | MapFlags.MAP_POPULATE);

        (long n, PfnRun[] runs) = Pin(p, a, 32, maxRuns: 5);

        Assert.That(n, Is.EqualTo(5));
        Assert.That(m.Memory.PinnedPages, Is.EqualTo(5));
        m.Memory.Unpin(runs, false);
    }

    [Test]
    public void UnpinningWhatWasNotPinned_IsCaughtAsCorruption()
    {
        SimMachine m = Machines.Create();
        SimProcess p = m.CreateProcess("t");
        ulong a = (ulong)p.Mmap(0, 4096, RW, Anon | MapFlags.MAP_POPULATE);
        long pfn = p.Mm.Translate(a);

        Assert.That(() => m.Memory.Unpin(new PfnRun(pfn, 1), false), Throws.InvalidOperationException.With.Message.Contains("did not pin"));
    }

    [Test]
    public void RlimitAccounting_OfAPinningDriver_ChargesAndRefundsLockedVm()
    {
        // What a pinning driver (type1) does: pin, then charge the pinned pages to the
        // mapping task's locked_vm; over the limit it must unpin and leave nothing behind.
        SimMachine m = Machines.Create();
        SimProcess p = m.CreateProcess("qemu", Credentials.User, new ResourceLimits { MemlockBytes = 16 * 4096 });
        ulong a = (ulong)p.Mmap(0, 32 * 4096, RW, Anon);
        MemorySnapshot before = MemorySnapshot.Take(m);

        (long n, PfnRun[] runs) = Pin(p, a, 32);
        int charge = p.Mm.AccountLockedVm(n, inc: true, p);
        if (charge != 0)
        {
            m.Memory.Unpin(runs, dirty: false);
        }

        Assert.That(charge, Is.EqualTo(Errno.ENOMEM.Negative()));
        MemorySnapshot after = MemorySnapshot.Take(m);
        Assert.That(after.PinnedPages, Is.EqualTo(before.PinnedPages));
        Assert.That(after.LockedVm[p.Pid], Is.Zero);

        (long n16, PfnRun[] r16) = Pin(p, a, 16);
        Assert.That(p.Mm.AccountLockedVm(n16, inc: true, p), Is.Zero);
        Assert.That(p.Mm.LockedVm, Is.EqualTo(16));
        m.Memory.Unpin(r16, true);
        Assert.That(p.Mm.AccountLockedVm(n16, inc: false, p), Is.Zero);
        Assert.That(MemorySnapshot.Take(m).PinnedPages, Is.Zero);
        Assert.That(p.Mm.LockedVm, Is.Zero);
        MemoryInvariants.Assert(m);
    }

    [Test]
    public void AFailNthSweepOverAPinOfSeveralVmas_LeaksNothing([Values(MmStruct.GupPinFaultSite, PhysMem.AllocPageFaultSite, null)] string? site)
    {
        int n = 1;
        for (; n < 200; n++)
        {
            SimMachine m = Machines.Create(huge2M: 2);
            MemorySnapshot before = MemorySnapshot.Take(m);
            SimProcess p = m.CreateProcess("t");
            // Three VMAs back to back: small pages, a 2 MiB hugetlb page, small pages.
            const ulong huge = 0x4000_0000, start = huge - (3 * 4096);
            Assert.That(p.Mmap(start, 3 * 4096, RW, Anon | MapFlags.MAP_FIXED), Is.EqualTo((long)start));
            Assert.That(p.Mmap(huge, 2UL << 20, RW, Anon | MapFlags.MAP_HUGETLB | MapFlags.MAP_FIXED), Is.EqualTo((long)huge));
            Assert.That(p.Mmap(huge + (2UL << 20), 3 * 4096, RW, Anon | MapFlags.MAP_FIXED), Is.EqualTo((long)huge + (2L << 20)));
            long pages = (3 * 2) + 512;

            m.Kernel.Faults.FailNth(n, site);
            (long pinned, PfnRun[] runs) = Pin(p, start, pages);
            bool consumed = m.Kernel.Faults.Consumed;
            m.Kernel.Faults.Disarm();

            if (!consumed)
            {
                Assert.That(pinned, Is.EqualTo(pages), $"n={n}: with nothing injected the whole range pins");
            }
            else
            {
                Assert.That(pinned, Is.EqualTo(Errno.ENOMEM.Negative()).Or.InRange(1, pages - 1), $"n={n}: -ENOMEM before anything was pinned, else the count so far");
            }

            Assert.That(m.Memory.PinnedPages, Is.EqualTo(Math.Max(0, pinned)), $"n={n}: exactly the reported pages are pinned");
            Assert.That(runs.Sum(r => r.Count), Is.EqualTo(Math.Max(0, pinned)));
            MemoryInvariants.Assert(m);
            m.Memory.Unpin(runs, dirty: false);
            p.Exit();
            MemoryInvariants.Assert(m);
            Assert.That(MemorySnapshot.Take(m).SameAs(before), Is.True, $"n={n}: {MemorySnapshot.Take(m)} vs {before}");
            if (!consumed)
            {
                break;
            }
        }

        Assert.That(n, Is.GreaterThan(1), "the sweep injected at least one failure");
        Assert.That(n, Is.LessThan(200), "the sweep ended");
    }

    // A test of the *Locked entry points' lockdep_assert_held: the WARNs when mmap_lock is not held are what it checks.
    [LeavesKernelWarnings]
    [Test]
    public void TheLockedEntryPoints_AssertMmapLock()
    {
        SimMachine m = Machines.Create();
        var dev = new CountingMisc(m);
        SimProcess p = m.CreateProcess("t");
        ulong a = (ulong)p.Mmap(0, 4096, RW, Anon);
        ulong bar = (ulong)p.Mmap(0, 4096, RW, MapFlags.MAP_SHARED, p.Open(dev.NodePath));
        Vma barVma = p.Mm.FindVma(bar)!;
        var runs = new PfnRun[1];
        string me = m.Kernel.CurrentTask.DisplayName;

        // Each entry point warns first; what it calls without the lock warns after it.
        KernelWarning pin = FirstWarning(m, () => p.Mm.PinUserPagesLocked(a, 1, LongtermWrite, runs, out _));
        KernelWarning follow = FirstWarning(m, () => p.Mm.FollowFaultPfnLocked(barVma, bar, write: false, out _));
        p.Mm.MmapLock.DownRead();
        KernelWarning account = FirstWarning(m, () => p.Mm.AccountLockedVmLocked(1, inc: true, p, bypassRlimit: true)); // Needs it for writing.
        p.Mm.MmapLock.UpRead();

        Assert.That(pin.Title, Is.EqualTo($"WARNING: lockdep_assert_held(mm[{p.Mm.Id}].mmap_lock): not held by {me}"));
        Assert.That(pin.Text, Does.Contain(nameof(MmStruct.PinUserPagesLocked)));
        Assert.That(follow.Title, Is.EqualTo($"WARNING: lockdep_assert_held(mm[{p.Mm.Id}].mmap_lock): not held by {me}"));
        Assert.That(follow.Text, Does.Contain(nameof(MmStruct.FollowFaultPfnLocked)));
        Assert.That(account.Title, Is.EqualTo($"WARNING: lockdep_assert_held_write(mm[{p.Mm.Id}].mmap_lock): not held for writing by {me}"));
        Assert.That(m.Kernel.Warnings.Select(w => w.Kind), Is.All.EqualTo(WarningKind.Lockdep));
        m.Memory.Unpin(runs, dirty: false);
    }

    private static KernelWarning FirstWarning(SimMachine m, Action call)
    {
        int before = m.Kernel.Warnings.Count;
        call();
        Assert.That(m.Kernel.Warnings, Has.Count.GreaterThan(before), "the call did not warn");
        return m.Kernel.Warnings[before];
    }
}
