// vfio-pci BAR mmap on both profiles: the checks of vfio_pci_core_mmap in the kernel's
// order (each rejected call leaves no VMA, no reservation, no mapping), lazy faulting,
// memory-disable blocking (COMMAND.MEM, VFIO_DEVICE_RESET, D3hot zap; SIGBUS on fault, EIO
// on read/write; re-enable works again), huge PFNMAP leaves on 6.12, 8-byte accesses, and
// peer-to-peer DMA into a mapped BAR through type1.

using NUnit.Framework;
using Vfio.Core;
using Vfio.Core.Client;
using Vfio.Core.Uapi;
using Vfio.Iommu.Type1;
using Vfio.Kernel;
using Vfio.Pci;
using Vfio.Platform.Devices;
using Vfio.Platform.Iommu.Hw;
using Vfio.Platform.Mm;
using Vfio.Platform.Pci;
using Vfio.Platform.Proc;
using Vfio.Sim;

namespace Vfio.Tests.Pci;

[TestFixture]
public sealed class VfioPciMmapTests
{
    internal const string Peer = "0000:07:00.0";
    private const int PeerBar = 2;
    private const long OneGiB = 1L << 30;

    internal static readonly KernelProfile[] Profiles = [KernelProfile.Linux6_12, KernelProfile.Linux6_1];

    internal static void Run(KernelProfile profile, Action<VfioPciRig> body, SchedulerMode mode = SchedulerMode.Real, ulong seed = 1, Func<VfioDesign, VfioDesign>? design = null)
    {
        VfioSimBuilder b = VfioPciRig.Builder(mode, seed).UseProfile(profile);
        if (design is not null)
        {
            b = b.UseDesign(design);
        }

        var rig = new VfioPciRig(b.AddVfioPci().Build());
        Runs.AssertPassed(rig.Sim.Run(() => body(rig)));
    }

    internal static VfioSession OpenSession(VfioPciRig rig, string bdf)
    {
        rig.BindToVfio(bdf);
        return rig.Sim.Open(rig.P, bdf);
    }

    [Test]
    public void AnEduBarMapping_FaultsInOnFirstAccess_AndAnEightByteLoadIsOneDeviceAccess([ValueSource(nameof(Profiles))] KernelProfile profile)
    {
        Run(profile, rig =>
        {
            using VfioSession s = OpenSession(rig, VfioPciRig.Edu);
            using VfioRegionMapping m = s.Device.MmapRegion(0, 0, 4096);
            Vma vma = rig.P.Mm.FindVma(m.Address)!;
            Assert.That(vma.Flags & (VmFlags.VM_PFNMAP | VmFlags.VM_IO | VmFlags.VM_DONTEXPAND | VmFlags.VM_DONTDUMP),
                Is.EqualTo(VmFlags.VM_PFNMAP | VmFlags.VM_IO | VmFlags.VM_DONTEXPAND | VmFlags.VM_DONTDUMP));
            Assert.That(vma.MappedPages, Is.Zero, "nothing is mapped until the first access");

            Assert.That(m.Read32(0), Is.EqualTo(0x010000edu), "edu's identification register");
            Assert.That(vma.MappedPages, Is.EqualTo(1));

            // edu answers any access below 0x80 that is not 4 bytes wide with all-ones, so a
            // load split in two would read the identification register instead.
            Assert.That(m.Read64(0), Is.EqualTo(ulong.MaxValue), "one 8-byte MMIO read, as a CPU does");
            m.Write32(4, 0x12345678);
            Assert.That(m.Read32(4), Is.EqualTo(~0x12345678u), "the liveness register inverts what was written");
            Assert.That(rig.Dev(VfioPciRig.Edu).RegionOwner(0), Is.EqualTo(VfioPciDriver.DriverName), "mmap requested the BAR's region");
        });
    }

    [Test]
    public void AnEightBytePreadOfABar_IsTwoFourByteAccessesOn61_AndOneOn612([ValueSource(nameof(Profiles))] KernelProfile profile)
    {
        Run(profile, rig =>
        {
            using VfioSession s = OpenSession(rig, VfioPciRig.Edu);
            ulong q = s.Device.ReadRegion64(0, 0);
            ulong expected = profile.Has(VfioPciFeatures.BarRdwrQwordAccess)
                ? ulong.MaxValue
                : 0x010000edu | ((ulong)s.Device.ReadRegion32(0, 4) << 32);
            Assert.That(q, Is.EqualTo(expected));

            // Register 0x80 (DMA source, 0 at reset) takes 8-byte reads; 0x84 is no register of its own.
            Assert.That(s.Device.ReadRegion64(0, 0x80), Is.EqualTo(profile.Has(VfioPciFeatures.BarRdwrQwordAccess) ? 0UL : 0xffffffff00000000UL),
                "as the real 6.12.118 and 6.1.192 read it");
        });
    }

    [Test]
    public void RC_11_MmapChecks_FollowTheKernelsOrder_AndARejectedMmapLeavesNothing([ValueSource(nameof(Profiles))] KernelProfile profile)
    {
        Run(profile, rig =>
        {
            using VfioSession s = OpenSession(rig, VfioPciRig.Edu);
            int fd = s.Device.Fd;
            VfioPciCoreDevice vdev = rig.Vdev(VfioPciRig.Edu);
            PciDevice pdev = rig.Dev(VfioPciRig.Edu);
            int vmas = rig.P.Mm.Vmas.Count;

            void Rejected(long ret, Errno errno, string what)
            {
                Assert.That(ret, Is.EqualTo(errno.Negative()), $"{what}: {ErrorReason.Current}");
                Assert.That(rig.P.Mm.Vmas, Has.Count.EqualTo(vmas), $"{what}: no VMA is left behind");
                Assert.That(vdev.MappingCount, Is.Zero, $"{what}: the device inode maps nothing");
                Assert.That(pdev.RegionOwner(0), Is.Null, $"{what}: no region was requested");
            }

            long Map(int index, long offset, ulong len, MapFlags flags = MapFlags.MAP_SHARED)
                => rig.P.Mmap(0, len, Prot.PROT_READ, flags, fd, VfioPciIndex.IndexToOffset(index) + offset);

            // Index past the regions is checked first: even a private mapping of it is EINVAL for that reason.
            Rejected(Map(9, 0, 4096, MapFlags.MAP_PRIVATE), Errno.EINVAL, "region 9");
            Assert.That(ErrorReason.Current, Does.Contain("region 9"));
            Rejected(Map(0, 0, 4096, MapFlags.MAP_PRIVATE), Errno.EINVAL, "MAP_PRIVATE");
            Assert.That(ErrorReason.Current, Does.Contain("MAP_SHARED"));
            Rejected(Map(VfioPciIndex.Rom, 0, 4096), Errno.EINVAL, "ROM");
            Rejected(Map(VfioPciIndex.Config, 0, 4096), Errno.EINVAL, "config");
            Rejected(Map(VfioPciIndex.Vga, 0, 4096), Errno.EINVAL, "VGA");
            Rejected(Map(1, 0, 4096), Errno.EINVAL, "absent BAR1");
            Assert.That(ErrorReason.Current, Does.Contain("cannot be mmapped"));
            // Each check comes before the next: the reason names the first rule broken.
            Rejected(Map(VfioPciIndex.Rom, 0, 4096, MapFlags.MAP_PRIVATE), Errno.EINVAL, "private ROM");
            Assert.That(ErrorReason.Current, Does.Contain("MAP_SHARED"), "the MAP_SHARED check precedes the region type");
            Rejected(Map(VfioPciIndex.Config, 0, 2 << 20), Errno.EINVAL, "a large config window");
            Assert.That(ErrorReason.Current, Does.Contain("config space"), "the region type precedes the length");
            Rejected(Map(1, 0, 2 << 20), Errno.EINVAL, "a large window of the absent BAR1");
            Assert.That(ErrorReason.Current, Does.Contain("cannot be mmapped"), "mmap capability precedes the length");
            Rejected(Map(0, 0, 2 << 20), Errno.EINVAL, "past the 1 MiB BAR");
            Assert.That(ErrorReason.Current, Does.Contain("page-aligned length"));
            Rejected(Map(0, (1 << 20) - 4096, 8192), Errno.EINVAL, "a window straddling the end");

            // The region reserved by another owner: EBUSY, last.
            Assert.That(pdev.RequestRegion(0, "other-driver"), Is.Zero);
            Assert.That(Map(0, 0, 4096), Is.EqualTo(Errno.EBUSY.Negative()), ErrorReason.Current);
            Assert.That(rig.P.Mm.Vmas, Has.Count.EqualTo(vmas));
            pdev.ReleaseRegion(0, "other-driver");

            // The last page of the BAR is fine.
            long addr = Map(0, (1 << 20) - 4096, 4096);
            Assert.That(addr, Is.GreaterThan(0), ErrorReason.Current);
            Assert.That(rig.P.Munmap((ulong)addr, 4096), Is.Zero);
            Assert.That(vdev.MappingCount, Is.Zero, "munmap takes the VMA off the device inode");
        });
    }

    [Test]
    public void RC_10_ReadWriteOfTheFd_RomWriteAndBadIndexAreEinval_CountZeroIsZero([ValueSource(nameof(Profiles))] KernelProfile profile)
    {
        Run(profile, rig =>
        {
            using VfioSession s = OpenSession(rig, VfioPciRig.Nic);
            int fd = s.Device.Fd;
            byte[] b = new byte[4];
            Assert.That(rig.P.Pwrite(fd, b, VfioPciIndex.IndexToOffset(VfioPciIndex.Rom)), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(rig.P.Pread(fd, b, VfioPciIndex.IndexToOffset(9)), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(rig.P.Pwrite(fd, b, VfioPciIndex.IndexToOffset(9)), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(rig.P.Pread(fd, Span<byte>.Empty, VfioPciIndex.IndexToOffset(0)), Is.Zero);
            Assert.That(rig.P.Pread(fd, Span<byte>.Empty, VfioPciIndex.IndexToOffset(9)), Is.Zero, "a zero count returns 0 before the index is looked at");
        });
    }

    [Test]
    public void BI_07_RegionInfo_ValidIndexesAnswer_AllOthersAreEinval()
    {
        Run(KernelProfile.Linux6_12, rig =>
        {
            using VfioSession s = OpenSession(rig, VfioPciRig.Edu);
            foreach (uint index in new uint[] { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0xffffffff })
            {
                long rc = rig.RegionInfo(s.Device.Fd, index, out VfioRegionInfo info);
                bool valid = index < VfioPciIndex.NumRegions && index != VfioPciIndex.Vga;
                Assert.That(rc, Is.EqualTo(valid ? 0 : Errno.EINVAL.Negative()), $"index {index}: {ErrorReason.Current}");
            }
        });
    }

    [Test]
    public void RC_04_AZeroLengthBarHasNoFlags_AMappableOneReadWriteMmap_TheMsixBarCarriesMsixMappable([ValueSource(nameof(Profiles))] KernelProfile profile)
    {
        Run(profile, rig =>
        {
            using VfioSession s = OpenSession(rig, VfioPciRig.Nic);
            VfioPciCoreDevice vdev = rig.Vdev(VfioPciRig.Nic);
            for (int bar = 0; bar <= VfioPciIndex.Bar5; bar++)
            {
                VfioInfo<VfioRegionInfo> r = s.Device.GetRegionInfo(bar);
                if (rig.Dev(VfioPciRig.Nic).ResourceLength(bar) == 0)
                {
                    Assert.That((r.Info.Size, r.Info.Flags, r.Caps.Count), Is.EqualTo((0UL, VfioRegionFlags.None, 0)), $"BAR{bar}");
                    Assert.That(r.Info.Offset, Is.EqualTo((ulong)bar << 40), "the kernel fills the offset before it looks at the size");
                    continue;
                }

                Assert.That(r.Info.Flags & (VfioRegionFlags.Read | VfioRegionFlags.Write), Is.EqualTo(VfioRegionFlags.Read | VfioRegionFlags.Write), $"BAR{bar}");
                bool msix = bar == vdev.MsixBar;
                Assert.That(r.Caps.Any(c => c.Id == VfioCapId.RegionMsixMappable), Is.EqualTo(msix && (r.Info.Flags & VfioRegionFlags.Mmap) != 0), $"BAR{bar}");
            }
        });
    }

    [Test]
    public void RC_05_And_DF_08_EveryRegionFlaggedMmap_Maps_WithASizeAboveZero_IncludingTheMsixBar([ValueSource(nameof(Profiles))] KernelProfile profile)
    {
        Run(profile, rig =>
        {
            foreach (string bdf in new[] { VfioPciRig.Edu, VfioPciRig.Nic, Peer })
            {
                using VfioSession s = OpenSession(rig, bdf);
                VfioDeviceInfo info = s.Device.GetInfo().Info;
                int mapped = 0;
                for (int i = 0; i < info.NumRegions; i++)
                {
                    if (i == VfioPciIndex.Vga)
                    {
                        continue;
                    }

                    VfioRegionInfo r = s.Device.GetRegionInfo(i).Info;
                    if ((r.Flags & VfioRegionFlags.Mmap) == 0)
                    {
                        continue;
                    }

                    Assert.That(r.Size, Is.GreaterThan(0UL), $"{bdf} region {i}");
                    long addr = rig.P.Mmap(0, r.Size, Prot.PROT_READ, MapFlags.MAP_SHARED, s.Device.Fd, (long)r.Offset);
                    Assert.That(addr, Is.GreaterThan(0), $"{bdf} region {i}: {ErrorReason.Current}");
                    Assert.That(rig.P.Munmap((ulong)addr, r.Size), Is.Zero);
                    mapped++;
                }

                Assert.That(mapped, Is.GreaterThan(0), $"{bdf} has a mappable BAR");
                Assert.That(rig.Vdev(bdf).MappingCount, Is.Zero);
            }
        });
    }

    [Test]
    public void ClearingCommandMem_ZapsTheMapping_AFaultIsSigbus_AReadIsEio_AndReenablingWorksAgain([ValueSource(nameof(Profiles))] KernelProfile profile)
    {
        Run(profile, rig =>
        {
            using VfioSession s = OpenSession(rig, VfioPciRig.Edu);
            using VfioRegionMapping m = s.Device.MmapRegion(0, 0, 4096);
            Vma vma = rig.P.Mm.FindVma(m.Address)!;
            Assert.That(m.Read32(0), Is.EqualTo(0x010000edu));
            long urBefore = rig.M.Memory.UnsupportedRequests;

            ushort cmd = s.Device.ReadConfig16(PciRegs.Command);
            s.Device.WriteConfig16(PciRegs.Command, (ushort)(cmd & ~PciRegs.CommandMemory));
            Assert.That(vma.MappedPages, Is.Zero, "clearing MEM zapped the mapping");
            var e = Assert.Throws<VfioSignalException>(() => m.Read32(0))!;
            Assert.That(e.Signal, Is.EqualTo(Signals.SIGBUS));
            Assert.That(m.TryWrite(4, new byte[4]), Is.EqualTo(Signals.SIGBUS));
            Assert.That(vma.MappedPages, Is.Zero, "a refused fault maps nothing");
            byte[] b = new byte[4];
            Assert.That(rig.P.Pread(s.Device.Fd, b, 0), Is.EqualTo(Errno.EIO.Negative()));
            Assert.That(rig.P.Pwrite(s.Device.Fd, b, 0), Is.EqualTo(Errno.EIO.Negative()));
            Assert.That(rig.M.Memory.UnsupportedRequests, Is.EqualTo(urBefore), "no access reached the device while its decode was off");

            s.Device.WriteConfig16(PciRegs.Command, cmd);
            Assert.That(m.Read32(0), Is.EqualTo(0x010000edu), "the access faults back in");
            Assert.That(s.Device.ReadRegion32(0, 0), Is.EqualTo(0x010000edu));
        });
    }

    [Test]
    public void DeviceReset_And_D3hot_ZapEveryBarMapping_D3FaultsAreSigbus_D0MapsAgain([ValueSource(nameof(Profiles))] KernelProfile profile)
    {
        Run(profile, rig =>
        {
            using VfioSession s = OpenSession(rig, Peer);
            PciDevice pdev = rig.Dev(Peer);
            using VfioRegionMapping regs = s.Device.MmapRegion(0, 0, 16384);
            using VfioRegionMapping mem = s.Device.MmapRegion(PeerBar, 0, 1 << 21);
            regs.Write32(0, 7);
            mem.Write64(8, 0x1122334455667788);
            Vma a = rig.P.Mm.FindVma(regs.Address)!, b = rig.P.Mm.FindVma(mem.Address)!;
            Assert.That(a.MappedPages + b.MappedPages, Is.GreaterThan(0));

            s.Device.Reset();
            Assert.That(a.MappedPages + b.MappedPages, Is.Zero, "VFIO_DEVICE_RESET zapped both BAR mappings");
            Assert.That(regs.Read32(0), Is.Zero, "after the reset the registers read their reset value");

            int pm = pdev.PmCap;
            Assert.That(pm, Is.Not.Zero);
            ushort csr = s.Device.ReadConfig16(pm + PciRegs.PmCtrl);
            s.Device.WriteConfig16(pm + PciRegs.PmCtrl, (ushort)(csr | 3));
            Assert.That(pdev.PowerState, Is.EqualTo(3), "the function went to D3hot");
            Assert.That(s.Device.ReadConfig16(pm + PciRegs.PmCtrl) & 3, Is.EqualTo(3), "and the config region shows it (as on the real 6.1 and 6.12)");
            Assert.That(a.MappedPages + b.MappedPages, Is.Zero, "D3hot zapped the mappings");
            Assert.That(mem.TryRead(0, new byte[8]), Is.EqualTo(Signals.SIGBUS), "no decode in D3hot: the fault is SIGBUS");
            Assert.That(rig.P.Pread(s.Device.Fd, new byte[4], VfioPciIndex.IndexToOffset(0)), Is.EqualTo(Errno.EIO.Negative()));

            s.Device.WriteConfig16(pm + PciRegs.PmCtrl, (ushort)(csr & ~3));
            Assert.That(pdev.PowerState, Is.Zero);
            Assert.That(s.Device.ReadConfig16(PciRegs.Command) & PciRegs.CommandMemory, Is.EqualTo(PciRegs.CommandMemory), "the state saved at D3hot entry came back");
            mem.Write32(0, 0xabcd);
            Assert.That(mem.Read32(0), Is.EqualTo(0xabcdu), "D0: the mapping faults back in and works");
        });
    }

    [Test]
    public void VfioDeviceReset_FromD3hot_RestoresTheStateSavedAtD3Entry_AsAConfigWriteToD0Does([ValueSource(nameof(Profiles))] KernelProfile profile)
    {
        // vfio_pci_set_power_state() restores pm_save on every way back to D0, not only the
        // PMCSR write: after D3hot a reset first brings the function to D0 with its state.
        Run(profile, rig =>
        {
            using VfioSession s = OpenSession(rig, Peer);
            PciDevice pdev = rig.Dev(Peer);
            long bar0 = pdev.ResourceStart(0);
            int pm = pdev.PmCap;
            ushort csr = s.Device.ReadConfig16(pm + PciRegs.PmCtrl);
            Assert.That(csr & PciRegs.PmCtrlNoSoftReset, Is.Zero, "D3hot → D0 resets this function");
            s.Device.WriteConfig16(pm + PciRegs.PmCtrl, (ushort)(csr | 3));
            Assert.That(pdev.PowerState, Is.EqualTo(3));

            s.Device.Reset();
            Assert.That(pdev.PowerState, Is.Zero);
            Assert.That(pdev.ReadConfig(PciRegs.Command, 2) & PciRegs.CommandMemory, Is.EqualTo((uint)PciRegs.CommandMemory), "memory decode came back with the saved state");
            Assert.That((long)(pdev.ReadConfig(PciRegs.BaseAddress0, 4) & ~0xfu), Is.EqualTo(bar0 & 0xffffffffL), "BAR0 came back with the saved state");
            Assert.DoesNotThrow(() => s.Device.ReadRegion32(0, 0), "and BAR0 decodes again (no EIO)");
        });
    }

    [Test]
    public void OnLinux612_AFaultMapsOneHugeLeafWhereAligned_On61_TheWholeVmaIn4KPages()
    {
        foreach (KernelProfile profile in Profiles)
        {
            Run(profile, rig =>
            {
                using VfioSession s = OpenSession(rig, Peer);
                GenericPciDevice peer = (GenericPciDevice)rig.Dev(Peer);
                const ulong at = 0x7e00_0000_0000; // 1 GiB aligned
                using VfioRegionMapping m = s.Device.MmapRegion(PeerBar, 0, OneGiB, address: at);
                Vma vma = rig.P.Mm.FindVma(at)!;
                m.Write64(OneGiB - 8, 42);
                Assert.That(m.Read64(OneGiB - 8), Is.EqualTo(42UL));
                if (profile.Has(VfioPciFeatures.HugePfnmapFaults))
                {
                    Assert.That(vma.LeafSizeAt(at + (ulong)OneGiB - 8), Is.EqualTo(OneGiB), "a 1 GiB PUD leaf");
                }
                else
                {
                    Assert.That(vma.LeafSizeAt(at), Is.EqualTo(4096), "4 KiB pages");
                    Assert.That(vma.MappedPages, Is.EqualTo((int)(OneGiB >> 12)), "the fault remapped the whole VMA");
                }

                Assert.That(peer.BarBytesBacked(PeerBar), Is.EqualTo(4096), "one page of the 1 GiB BAR holds data");

                // A 2 MiB-aligned window smaller than 1 GiB gets PMD leaves on 6.12.
                using VfioRegionMapping w = s.Device.MmapRegion(PeerBar, 4L << 20, 4L << 20, address: at + (ulong)(2 * OneGiB));
                Assert.That(w.Read64(0), Is.Zero);
                Vma wv = rig.P.Mm.FindVma(w.Address)!;
                Assert.That(wv.LeafSizeAt(w.Address), Is.EqualTo(profile.Has(VfioPciFeatures.HugePfnmapFaults) ? 2L << 20 : 4096));
            });
        }
    }

    [Test]
    public void AnUnalignedWindow_FallsBackToPages_On612()
    {
        Run(KernelProfile.Linux6_12, rig =>
        {
            using VfioSession s = OpenSession(rig, Peer);
            // The VMA is 2 MiB aligned but the BAR offset is not: the frame is misaligned, so 4 KiB.
            using VfioRegionMapping m = s.Device.MmapRegion(PeerBar, 4096, 4L << 20, address: 0x7e00_0000_0000);
            Assert.That(m.Read32(0), Is.Zero);
            Vma vma = rig.P.Mm.FindVma(m.Address)!;
            Assert.That(vma.LeafSizeAt(m.Address), Is.EqualTo(4096));
            Assert.That(vma.MappedPages, Is.EqualTo(1), "6.12 maps only the faulting page");
        });
    }

    [Test]
    public void AForkedChildsCopyOfABarMapping_IsZappedWithTheParents_WhenMemGoesOff([ValueSource(nameof(Profiles))] KernelProfile profile)
    {
        Run(profile, rig =>
        {
            using VfioSession s = OpenSession(rig, VfioPciRig.Edu);
            using VfioRegionMapping m = s.Device.MmapRegion(0, 0, 4096);
            Assert.That(m.Read32(0), Is.EqualTo(0x010000edu));
            Assert.That(rig.P.Fork(out SimProcess? forked), Is.GreaterThan(0), ErrorReason.Current);
            SimProcess child = forked!;
            byte[] b = new byte[4];
            Assert.That(child.CpuRead(m.Address, b), Is.Zero);
            Assert.That(BitConverter.ToUInt32(b), Is.EqualTo(0x010000edu), "the child reaches the BAR through its copy");
            Assert.That(rig.Vdev(VfioPciRig.Edu).MappingCount, Is.EqualTo(2));

            long ur = rig.M.Memory.UnsupportedRequests;
            ushort cmd = s.Device.ReadConfig16(PciRegs.Command);
            s.Device.WriteConfig16(PciRegs.Command, (ushort)(cmd & ~PciRegs.CommandMemory));
            Assert.That(child.CpuRead(m.Address, b), Is.EqualTo(Signals.SIGBUS), "the child's copy was zapped too");
            Assert.That(rig.M.Memory.UnsupportedRequests, Is.EqualTo(ur));
            s.Device.WriteConfig16(PciRegs.Command, cmd);
            child.Exit(0);
            Assert.That(rig.Vdev(VfioPciRig.Edu).MappingCount, Is.EqualTo(1), "the child's exit unmapped its copy");
        });
    }

    [Test]
    public void AMappingOfAClosedDevicesFd_KeepsTheDeviceOpen_UntilMunmap()
    {
        Run(KernelProfile.Linux6_12, rig =>
        {
            VfioSession s = OpenSession(rig, VfioPciRig.Edu);
            VfioRegionMapping m = s.Device.MmapRegion(0, 0, 4096);
            s.Dispose();
            Assert.That(m.Read32(0), Is.EqualTo(0x010000edu), "the VMA holds the file, so the device stays open");
            m.Unmap();
            Assert.That(rig.Dev(VfioPciRig.Edu).RegionOwner(0), Is.Null, "the last close released the region");
            Assert.That(m.TryRead(0, new byte[4]), Is.EqualTo(Signals.SIGSEGV), "nothing is mapped there any more");
        });
    }

    [Test]
    public void PeerToPeer_AnEduDmaToAnIovaMappedOnTheOtherDevicesBar_LandsInThatBar_WithHugeIommuLeaves([ValueSource(nameof(Profiles))] KernelProfile profile)
    {
        Run(profile, rig =>
        {
            rig.BindToVfio(VfioPciRig.Edu);
            rig.BindToVfio(Peer);
            using var c = new VfioContainerFd(rig.P);
            using var g1 = new VfioGroupFd(rig.P, rig.GroupId(VfioPciRig.Edu));
            using var g2 = new VfioGroupFd(rig.P, rig.GroupId(Peer));
            g1.SetContainer(c);
            g2.SetContainer(c);
            c.SetIommu(VfioExtension.Type1v2);
            using VfioDeviceFd edu = g1.GetDeviceFd(VfioPciRig.Edu);
            using VfioDeviceFd peer = g2.GetDeviceFd(Peer);

            const ulong at = 0x7e00_0000_0000;
            using VfioRegionMapping bar = peer.MmapRegion(PeerBar, 0, OneGiB, address: at);
            // edu addresses 28 bits: the BAR goes at IOVA 0, where one 1 GiB leaf can map it.
            c.MapDma(at, 0, (ulong)OneGiB);

            // The source bytes are in the peer's BAR too, stored by the CPU through the mapping.
            const long src = 0x100_0000, dst = 0x300_0000;
            ulong[] pattern = new ulong[256];
            for (int i = 0; i < pattern.Length; i++)
            {
                pattern[i] = 0x0101_0101_0101_0101UL * (ulong)(i + 1);
                bar.Write64(src + (8 * i), pattern[i]);
            }

            // edu copies BAR → its buffer → BAR (peer reads and writes), programmed through its own BAR mapping.
            edu.WriteConfig16(PciRegs.Command, (ushort)(edu.ReadConfig16(PciRegs.Command) | PciRegs.CommandMaster));
            using VfioRegionMapping regs = edu.MmapRegion(0, 0, 4096);
            EduDma(regs, src: src, dst: EduDevice.DmaBufferStart, count: 2048, toRam: false);
            EduDma(regs, src: EduDevice.DmaBufferStart, dst: dst, count: 2048, toRam: true);

            Assert.That(bar.Read64(dst), Is.EqualTo(pattern[0]), "the peer's BAR holds what edu wrote");
            Assert.That(bar.Read64(dst + 2040), Is.EqualTo(pattern[255]));
            Assert.That(((GenericPciDevice)rig.Dev(Peer)).BarBytesBacked(PeerBar), Is.EqualTo(8192), "two pages of the 1 GiB BAR hold data");

            VfioContainer container = VfioContainer.FromFile(rig.P.Files.Get(c.Fd)!)!;
            IoPageTable pt = VfioIommuType1.Instance(container)!.Domains[0].PageTable!;
            Assert.That(pt.Leaves1G, Is.EqualTo(1), $"the 1 GiB-aligned BAR run is one 1 GiB IOMMU leaf (4K {pt.Leaves4K}, 2M {pt.Leaves2M})");
        });
    }

    [Test]
    public void PeerToPeer_AHalfGigWindowTwoMegAligned_IsMappedWithTwoMegIommuLeaves()
    {
        Run(KernelProfile.Linux6_12, rig =>
        {
            using VfioSession s = OpenSession(rig, Peer);
            using VfioRegionMapping bar = s.Device.MmapRegion(PeerBar, 2L << 20, 512L << 20, address: 0x7e00_0020_0000);
            s.Container.MapDma(bar.Address, 0x1_0020_0000, bar.Length);
            VfioContainer container = VfioContainer.FromFile(rig.P.Files.Get(s.Container.Fd)!)!;
            IoPageTable pt = VfioIommuType1.Instance(container)!.Domains[0].PageTable!;
            Assert.That((pt.Leaves4K, pt.Leaves2M, pt.Leaves1G), Is.EqualTo((0L, 256L, 0L)));
            Assert.That(s.Container.UnmapDma(0x1_0020_0000, bar.Length), Is.EqualTo(bar.Length));
        });
    }

    [Test]
    public void LR_08_TwoThreadsTouchTheFirstAndLastPageOfAHugeAlignedMapping_200Times_NoErrorEver(
        [ValueSource(nameof(Profiles))] KernelProfile profile, [Values] SchedulerMode mode)
    {
        Run(profile, rig =>
        {
            using VfioSession s = OpenSession(rig, Peer);
            const ulong at = 0x7e00_0000_0000;
            const long size = 2L << 20;
            for (int iteration = 0; iteration < 200; iteration++)
            {
                VfioRegionMapping m = s.Device.MmapRegion(PeerBar, 0, size, address: at);
                int first = -1, last = -1;
                KTask a = rig.P.SpawnThread("first", () => first = m.TryRead(0, new byte[8]));
                KTask b = rig.P.SpawnThread("last", () => last = m.TryRead(size - 4096, new byte[8]));
                a.Join();
                b.Join();
                Assert.That((first, last), Is.EqualTo((0, 0)), $"iteration {iteration}: no signal (no VM_FAULT_OOM, no SIGBUS)");
                Vma vma = rig.P.Mm.FindVma(at)!;
                Assert.That(vma.LeafSizeAt(at), Is.EqualTo(profile.Has(VfioPciFeatures.HugePfnmapFaults) ? size : 4096));
                m.Unmap();
            }

            Assert.That(rig.Vdev(Peer).MappingCount, Is.Zero);
            Assert.That(rig.Vdev(Peer).VmaListSnapshot(), Is.Empty);
        }, mode);
    }

    [Test]
    public void LR_08_AOneGigMapping_TouchedAtBothEndsAtOnce_IsOnePudLeaf_On612([Values] SchedulerMode mode)
    {
        Run(KernelProfile.Linux6_12, rig =>
        {
            using VfioSession s = OpenSession(rig, Peer);
            const ulong at = 0x7e00_0000_0000;
            for (int iteration = 0; iteration < 5; iteration++)
            {
                using VfioRegionMapping m = s.Device.MmapRegion(PeerBar, 0, OneGiB, address: at);
                int first = -1, last = -1;
                KTask a = rig.P.SpawnThread("first", () => first = m.TryRead(0, new byte[8]));
                KTask b = rig.P.SpawnThread("last", () => last = m.TryRead(OneGiB - 4096, new byte[8]));
                a.Join();
                b.Join();
                Assert.That((first, last), Is.EqualTo((0, 0)));
                Assert.That(rig.P.Mm.FindVma(at)!.LeafSizeAt(at), Is.EqualTo(OneGiB));
            }
        }, mode);
    }

    private static void EduDma(VfioRegionMapping regs, ulong src, ulong dst, ulong count, bool toRam)
    {
        regs.Write64(EduDevice.RegDmaSource, src);
        regs.Write64(EduDevice.RegDmaDestination, dst);
        regs.Write64(EduDevice.RegDmaCount, count);
        regs.Write64(EduDevice.RegDmaCommand, EduDevice.DmaCmdStart | (toRam ? EduDevice.DmaCmdToRam : 0));
        while ((regs.Read64(EduDevice.RegDmaCommand) & EduDevice.DmaCmdStart) != 0)
        {
            KTask.Msleep(1);
        }
    }
}
