// Tests the ROM region (index 6) of Vfio.Pci/VfioPciCoreDevice.Rdwr.cs and the VGA region
// (index 8) of VfioPciCoreDevice.Vga.cs on the default machine's VGA function (found at run
// time by its class: its bus and IOMMU group depend on the machine's other slots), with the
// option-ROM images of Vfio.Platform/Pci/OptionRom.cs and the legacy VGA decode and arbiter
// of the platform. ROM answers follow the real 6.1.192 and 6.12.118 with e1000e's ROM: a read
// returns the image, all-ones past it, EINVAL at or past the BAR's end, ENOMEM while memory
// decode is off, and GET_REGION_INFO still shows READ with the BAR size then.

using System.Buffers.Binary;
using NUnit.Framework;
using Vfio.Core.Uapi;
using Vfio.Kernel;
using Vfio.Pci;
using Vfio.Platform.Devices;
using Vfio.Platform.Machine;
using Vfio.Platform.Mm;
using Vfio.Platform.Pci;

namespace Vfio.Tests.Pci;

[TestFixture]
public sealed class VfioPciRomVgaTests
{
    private const long RomSize = 64 << 10;

    private static readonly KernelProfile[] s_profiles = [KernelProfile.Linux6_12, KernelProfile.Linux6_1];

    private static string VgaBdf(VfioPciRig rig)
    {
        foreach (var d in rig.M.Pci.Devices)
        {
            if (d is PciDevice { IsVga: true } p)
            {
                return p.Name;
            }
        }

        throw new AssertionException("the default machine has no VGA function");
    }

    private static void WithVga(Action<VfioPciRig, string, int> body, KernelProfile? profile = null, VfioPciOptions? options = null, SchedulerMode mode = SchedulerMode.Controlled)
    {
        var rig = new VfioPciRig(VfioPciRig.Builder(mode).UseProfile(profile ?? KernelProfile.Linux6_12).AddVfioPci(options).Build());
        Runs.AssertPassed(rig.Sim.Run(() =>
        {
            string bdf = VgaBdf(rig);
            (int c, int g, int d) = rig.Open(bdf);
            body(rig, bdf, d);
            rig.CloseAll((c, g, d));
        }));
    }

    private static long Off(int index, long offset = 0) => VfioPciIndex.IndexToOffset(index) + offset;

    private static void WriteCommand(VfioPciRig rig, int d, ushort value)
        => Assert.That(rig.P.Pwrite(d, BitConverter.GetBytes(value), Off(VfioPciIndex.Config, PciRegs.Command)), Is.EqualTo(2));

    // ---- ROM.

    [Test]
    public void TheRomRegion_ReadsTheOptionRomImage_WithItsSignatureAndPciDataStructure([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        WithVga((rig, bdf, d) =>
        {
            Assert.That(rig.RegionInfo(d, VfioPciIndex.Rom, out VfioRegionInfo info), Is.Zero, ErrorReason.Current);
            Assert.That(info.Size, Is.EqualTo(RomSize), "the BAR's size, not the image's");
            Assert.That(info.Flags, Is.EqualTo(VfioRegionFlags.Read));

            byte[] head = new byte[64];
            Assert.That(rig.P.Pread(d, head, Off(VfioPciIndex.Rom)), Is.EqualTo(64), ErrorReason.Current);
            Assert.That(head[0..2], Is.EqualTo(new byte[] { 0x55, 0xaa }));
            int pcir = BinaryPrimitives.ReadUInt16LittleEndian(head.AsSpan(0x18));
            Assert.That(BinaryPrimitives.ReadUInt32LittleEndian(head.AsSpan(pcir)), Is.EqualTo(OptionRom.PcirSignature));
            Assert.That(BinaryPrimitives.ReadUInt16LittleEndian(head.AsSpan(pcir + 4)), Is.EqualTo(VgaDevice.VendorId));
            Assert.That(BinaryPrimitives.ReadUInt16LittleEndian(head.AsSpan(pcir + 6)), Is.EqualTo(VgaDevice.DeviceId));
            Assert.That(head[pcir + 0x0f], Is.EqualTo(0x03), "class code: display");
            Assert.That(BinaryPrimitives.ReadUInt16LittleEndian(head.AsSpan(pcir + 0x10)) * 512, Is.EqualTo(RomSize / 2), "one image filling half the ROM");
            Assert.That(head[pcir + 0x15] & 0x80, Is.EqualTo(0x80), "the last image");

            // The whole image sums to zero, as a BIOS checks.
            byte[] image = new byte[RomSize / 2];
            Assert.That(rig.P.Pread(d, image, Off(VfioPciIndex.Rom)), Is.EqualTo(image.Length));
            byte sum = 0;
            foreach (byte b in image)
            {
                sum += b;
            }

            Assert.That(sum, Is.Zero);
            Assert.That((rig.Dev(bdf).ReadConfig(PciRegs.RomAddress, 4) & PciRegs.RomEnable), Is.Zero, "pci_unmap_rom turned the ROM BAR off again");
        }, profile);
    }

    [Test]
    public void PastTheImage_TheRomReadsAllOnes_AndAtOrPastTheBarEndAReadIsEinval_AndAWriteAlways()
    {
        WithVga((rig, bdf, d) =>
        {
            byte[] b = new byte[4];
            Assert.That(rig.P.Pread(d, b, Off(VfioPciIndex.Rom, RomSize / 2)), Is.EqualTo(4));
            Assert.That(b, Is.EqualTo(new byte[] { 0xff, 0xff, 0xff, 0xff }), "past the image: the excluded range");
            Assert.That(rig.P.Pread(d, b, Off(VfioPciIndex.Rom, RomSize - 4)), Is.EqualTo(4));
            byte[] eight = new byte[8];
            Assert.That(rig.P.Pread(d, eight, Off(VfioPciIndex.Rom, RomSize - 4)), Is.EqualTo(4), "clamped to the BAR");
            Assert.That(rig.P.Pread(d, b, Off(VfioPciIndex.Rom, RomSize)), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(rig.P.Pwrite(d, b, Off(VfioPciIndex.Rom)), Is.EqualTo(Errno.EINVAL.Negative()), "RC-10: the ROM is read-only");
        });
    }

    [Test]
    public void RC_10_RomWrite_PastTheRegions_AndZeroCount()
    {
        WithVga((rig, bdf, d) =>
        {
            byte[] b = new byte[4];
            Assert.That(rig.P.Pwrite(d, b, Off(VfioPciIndex.Rom)), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(rig.P.Pread(d, b, Off(VfioPciIndex.NumRegions)), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(rig.P.Pread(d, b.AsSpan(0, 0).ToArray(), Off(VfioPciIndex.Rom)), Is.Zero);
        }, mode: SchedulerMode.Real);
    }

    [Test]
    public void WithMemoryDecodeOff_ARomReadIsEnomem_ButRegionInfoStillFindsTheImage([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        WithVga((rig, bdf, d) =>
        {
            ushort cmd = (ushort)rig.Read32(d, VfioPciIndex.Config, PciRegs.Command);
            WriteCommand(rig, d, (ushort)(cmd & ~PciRegs.CommandMemory));
            byte[] b = new byte[4];
            Assert.That(rig.P.Pread(d, b, Off(VfioPciIndex.Rom)), Is.EqualTo(Errno.ENOMEM.Negative()), "the header reads all-ones: pci_map_rom finds no image");
            Assert.That(rig.RegionInfo(d, VfioPciIndex.Rom, out VfioRegionInfo info), Is.Zero);
            Assert.That((info.Size, info.Flags), Is.EqualTo((RomSize, VfioRegionFlags.Read)), "GET_REGION_INFO turns decode on to look");
            Assert.That(rig.Dev(bdf).ReadConfig(PciRegs.Command, 2) & PciRegs.CommandMemory, Is.Zero, "and restores COMMAND");
            WriteCommand(rig, d, cmd);
            Assert.That(rig.P.Pread(d, b, Off(VfioPciIndex.Rom)), Is.EqualTo(4));
            Assert.That(BitConverter.ToUInt16(b), Is.EqualTo(0xaa55));
        }, profile);
    }

    [Test]
    public void ABlankRom_HasSizeZeroAndNoFlags_AndAReadIsEnomem_WhileChainedImagesAreReadToTheirEnd()
    {
        const string json = """
            {"memory":{"ram":"1G"},"pci":[
              {"slot":1,"type":"root-port","acs":true,"children":[{"slot":0,"type":"generic","bars":[{"index":0,"size":"4K"}],"rom":"16K","romImages":0}]},
              {"slot":2,"type":"root-port","acs":true,"children":[{"slot":0,"type":"generic","bars":[{"index":0,"size":"4K"}],"rom":"16K","romImages":2}]}]}
            """;
        var rig = new VfioPciRig(VfioPciRig.Builder(SchedulerMode.Controlled).UseMachine(MachineDescriptionReader.Parse(json)).AddVfioPci().Build());
        Runs.AssertPassed(rig.Sim.Run(() =>
        {
            (int c, int g, int d) = rig.Open("0000:01:00.0");
            Assert.That(rig.RegionInfo(d, VfioPciIndex.Rom, out VfioRegionInfo info), Is.Zero);
            Assert.That((info.Size, info.Flags), Is.EqualTo((0UL, (VfioRegionFlags)0)), "no valid image: pci_map_rom fails");
            byte[] b = new byte[4];
            Assert.That(rig.P.Pread(d, b, Off(VfioPciIndex.Rom)), Is.EqualTo(Errno.ENOMEM.Negative()));
            Assert.That(rig.M.Kernel.Log.Contains("Invalid PCI ROM header signature: expecting 0xaa55, got 0xffff"), Is.True);
            rig.CloseAll((c, g, d));

            (c, g, d) = rig.Open("0000:02:00.0");
            Assert.That(rig.RegionInfo(d, VfioPciIndex.Rom, out info), Is.Zero);
            Assert.That((info.Size, info.Flags), Is.EqualTo((16384UL, VfioRegionFlags.Read)));
            Assert.That(rig.P.Pread(d, b, Off(VfioPciIndex.Rom, 4096)), Is.EqualTo(4));
            Assert.That(BitConverter.ToUInt16(b), Is.EqualTo(0xaa55), "the second image starts where the first ends");
            Assert.That(rig.P.Pread(d, b, Off(VfioPciIndex.Rom, 8192)), Is.EqualTo(4));
            Assert.That(b, Is.EqualTo(new byte[] { 0xff, 0xff, 0xff, 0xff }), "past both images");
            rig.CloseAll((c, g, d));
        }));
    }

    [Test]
    public void Edu_HasNoRom_SizeZero_AndAReadIsEinval()
    {
        VfioPciRig.Run(SchedulerMode.Real, rig =>
        {
            (int c, int g, int d) = rig.Open(VfioPciRig.Edu);
            Assert.That(rig.RegionInfo(d, VfioPciIndex.Rom, out VfioRegionInfo info), Is.Zero);
            Assert.That((info.Size, info.Flags), Is.EqualTo((0UL, (VfioRegionFlags)0)));
            Assert.That(rig.P.Pread(d, new byte[4], Off(VfioPciIndex.Rom)), Is.EqualTo(Errno.EINVAL.Negative()));
            rig.CloseAll((c, g, d));
        });
    }

    // ---- VGA.

    [Test]
    public void AVgaDevice_ReportsTheVgaRegion_ReadWrite_0xc0000Bytes([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        WithVga((rig, bdf, d) =>
        {
            Assert.That(rig.RegionInfo(d, VfioPciIndex.Vga, out VfioRegionInfo info), Is.Zero, ErrorReason.Current);
            Assert.That(info.Offset, Is.EqualTo((ulong)Off(VfioPciIndex.Vga)));
            Assert.That(info.Size, Is.EqualTo(0xc0000UL));
            Assert.That(info.Flags, Is.EqualTo(VfioRegionFlags.Read | VfioRegionFlags.Write), "never MMAP");
            Assert.That(rig.Vdev(bdf).HasVga, Is.True);
            for (uint i = 0; i < VfioPciIndex.NumRegions; i++)
            {
                Assert.That(rig.RegionInfo(d, i, out _), Is.Zero, $"region {i}");
            }
        }, profile);
    }

    [Test]
    public void LegacyPortsAndTheMemoryWindow_RoundTrip_AtTheirOwnAddressesAsOffsets([ValueSource(nameof(s_profiles))] KernelProfile profile)
    {
        WithVga((rig, bdf, d) =>
        {
            PciDevice vga = rig.Dev(bdf);
            Assert.That(vga.LegacyVgaIoDecoded || vga.LegacyVgaMemoryDecoded, Is.False, "firmware routed nothing: VGA Enable is clear on the root port");

            // Miscellaneous output: written at 0x3c2, read back at 0x3cc (bit 0 selects the colour CRTC).
            Assert.That(rig.P.Pwrite(d, [0x67], Off(VfioPciIndex.Vga, 0x3c2)), Is.EqualTo(1), ErrorReason.Current);
            byte[] one = new byte[1];
            Assert.That(rig.P.Pread(d, one, Off(VfioPciIndex.Vga, 0x3cc)), Is.EqualTo(1));
            Assert.That(one[0], Is.EqualTo(0x67));
            Assert.That(vga.LegacyVgaIoDecoded, Is.True, "vga_get routed the legacy I/O to it");
            Assert.That(vga.OnBus!.Self!.ReadConfig(PciRegs.BridgeControl, 2) & PciDevice.BridgeCtlVga, Is.Not.Zero, "through the root port's VGA Enable");

            // A word write to the sequencer index port sets index and data; the data port reads it back.
            Assert.That(rig.P.Pwrite(d, [0x02, 0x0f], Off(VfioPciIndex.Vga, 0x3c4)), Is.EqualTo(2));
            Assert.That(rig.P.Pread(d, one, Off(VfioPciIndex.Vga, 0x3c5)), Is.EqualTo(1));
            Assert.That(one[0], Is.EqualTo(0x0f));

            // The colour CRTC, then the DAC's auto-incrementing data port.
            Assert.That(rig.P.Pwrite(d, [0x0e, 0x12], Off(VfioPciIndex.Vga, 0x3d4)), Is.EqualTo(2));
            byte[] two = new byte[2];
            Assert.That(rig.P.Pread(d, two, Off(VfioPciIndex.Vga, 0x3d4)), Is.EqualTo(2));
            Assert.That(two, Is.EqualTo(new byte[] { 0x0e, 0x12 }));
            // The DAC: entry 5 written through the auto-incrementing data port, read back from index 5.
            Assert.That(rig.P.Pwrite(d, [5], Off(VfioPciIndex.Vga, 0x3c8)), Is.EqualTo(1));
            foreach (byte component in new byte[] { 0x3f, 0x20, 0x01 })
            {
                Assert.That(rig.P.Pwrite(d, [component], Off(VfioPciIndex.Vga, 0x3c9)), Is.EqualTo(1));
            }

            Assert.That(rig.P.Pwrite(d, [5], Off(VfioPciIndex.Vga, 0x3c7)), Is.EqualTo(1));
            byte[] rgb = new byte[3];
            for (int i = 0; i < 3; i++)
            {
                Assert.That(rig.P.Pread(d, one, Off(VfioPciIndex.Vga, 0x3c9)), Is.EqualTo(1));
                rgb[i] = one[0];
            }

            Assert.That(rgb, Is.EqualTo(new byte[] { 0x3f, 0x20, 0x01 }));

            // The memory window: what is written at 0xa0000 reads back there and through BAR0.
            byte[] pattern = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
            Assert.That(rig.P.Pwrite(d, pattern, Off(VfioPciIndex.Vga, 0xa0010)), Is.EqualTo(pattern.Length));
            byte[] back = new byte[pattern.Length];
            Assert.That(rig.P.Pread(d, back, Off(VfioPciIndex.Vga, 0xa0010)), Is.EqualTo(pattern.Length));
            Assert.That(back, Is.EqualTo(pattern));
            Assert.That(rig.Read32(d, 0, 0x10), Is.EqualTo(0x04030201u), "the window aliases the framebuffer's first 128 KiB");
            Assert.That(vga.LegacyVgaMemoryDecoded, Is.True);
            Assert.That(rig.M.Vgaarb.State(vga)!.Value.Owns & VgaResource.LegacyMask, Is.EqualTo(VgaResource.LegacyMask));
            Assert.That((rig.M.Vgaarb.State(vga)!.Value.IoLocks, rig.M.Vgaarb.State(vga)!.Value.MemLocks), Is.EqualTo((0, 0)), "vga_put after each access");
        }, profile);
    }

    [Test]
    public void AnAccessIsClampedToItsRange_AndOffsetsOutsideTheLegacyRangesAreEinval()
    {
        WithVga((rig, bdf, d) =>
        {
            byte[] b = new byte[16];
            Assert.That(rig.P.Pread(d, b, Off(VfioPciIndex.Vga, 0x3b8)), Is.EqualTo(4), "0x3b8-0x3bb");
            Assert.That(rig.P.Pread(d, b, Off(VfioPciIndex.Vga, 0x3dc)), Is.EqualTo(4), "0x3dc-0x3df");
            Assert.That(rig.P.Pread(d, b, Off(VfioPciIndex.Vga, 0xbfff8)), Is.EqualTo(8), "the end of the window");
            foreach (long off in new long[] { 0, 0x3af, 0x3bc, 0x3bf, 0x3e0, 0x9ffff, 0xc0000, 0xfffff })
            {
                Assert.That(rig.P.Pread(d, b, Off(VfioPciIndex.Vga, off)), Is.EqualTo(Errno.EINVAL.Negative()), $"read at 0x{off:x}");
                Assert.That(rig.P.Pwrite(d, b, Off(VfioPciIndex.Vga, off)), Is.EqualTo(Errno.EINVAL.Negative()), $"write at 0x{off:x}");
            }
        });
    }

    [Test]
    public void TheVgaRegion_CannotBeMmapped()
    {
        WithVga((rig, bdf, d) =>
        {
            long addr = rig.P.Mmap(0, 4096, Prot.PROT_READ, MapFlags.MAP_SHARED, d, Off(VfioPciIndex.Vga, 0xa0000));
            Assert.That(addr, Is.EqualTo(Errno.EINVAL.Negative()));
        });
    }

    [Test]
    public void LegacyVgaAccesses_IgnoreMemoryDecode_AsTheKernelDoes()
    {
        WithVga((rig, bdf, d) =>
        {
            Assert.That(rig.P.Pwrite(d, [0xaa], Off(VfioPciIndex.Vga, 0xa0000)), Is.EqualTo(1));
            ushort cmd = (ushort)rig.Read32(d, VfioPciIndex.Config, PciRegs.Command);
            WriteCommand(rig, d, (ushort)(cmd & ~PciRegs.CommandMemory));
            byte[] b = new byte[1];
            Assert.That(rig.P.Pread(d, b, Off(VfioPciIndex.Vga, 0xa0000)), Is.EqualTo(1), "no EIO: legacy VGA is not a BAR");
            Assert.That(b[0], Is.EqualTo(0xff), "but the function no longer decodes it, and the arbiter still thinks it owns it");
            WriteCommand(rig, d, cmd);
            Assert.That(rig.P.Pread(d, b, Off(VfioPciIndex.Vga, 0xa0000)), Is.EqualTo(1));
            Assert.That(b[0], Is.EqualTo(0xaa));
        });
    }

    [Test]
    public void WithDisableVga_AVgaDeviceHasNoVgaRegion()
    {
        WithVga((rig, bdf, d) =>
        {
            Assert.That(rig.Vdev(bdf).HasVga, Is.False);
            Assert.That(rig.RegionInfo(d, VfioPciIndex.Vga, out _), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(rig.P.Pread(d, new byte[1], Off(VfioPciIndex.Vga, 0x3cc)), Is.EqualTo(Errno.EINVAL.Negative()));
        }, options: new VfioPciOptions { DisableVga = true });
    }

    [Test]
    public void WithDisableVgaAndSeveralVgaFunctions_TheLegacyRangesAreDecodedOnlyWhereAnotherVgaSharesTheBusOrIsBelowIt([Values] bool disableVga)
    {
        // vfio_pci_set_decode(): two VGA functions on bus 01, one alone on bus 02.
        const string json = """
            {"memory":{"ram":"1G"},"iommu":{"pgsizes":["4K"],"addressWidth":48},"pci":[
              {"slot":1,"type":"root-port","acs":true,"children":[{"slot":0,"type":"vga"},{"slot":1,"type":"vga"}]},
              {"slot":2,"type":"root-port","acs":true,"children":[{"slot":0,"type":"vga"}]}]}
            """;
        var rig = new VfioPciRig(VfioPciRig.Builder(SchedulerMode.Controlled).UseMachine(MachineDescriptionReader.Parse(json))
            .AddVfioPci(new VfioPciOptions { DisableVga = disableVga }).Build());
        Runs.AssertPassed(rig.Sim.Run(() =>
        {
            string[] vgas = ["0000:01:00.0", "0000:01:01.0", "0000:02:00.0"];
            foreach (string bdf in vgas)
            {
                rig.BindToVfio(bdf);
            }

            foreach (string bdf in vgas)
            {
                VgaResource decodes = rig.M.Vgaarb.State(rig.Dev(bdf))!.Value.Decodes;
                bool legacy = !disableVga || bdf.StartsWith("0000:01:", StringComparison.Ordinal);
                Assert.That(decodes & VgaResource.LegacyMask, Is.EqualTo(legacy ? VgaResource.LegacyMask : 0), bdf);
                Assert.That(decodes & (VgaResource.NormalIo | VgaResource.NormalMem), Is.EqualTo(VgaResource.NormalIo | VgaResource.NormalMem), bdf);
            }
        }));
    }

    [Test]
    public void ADeviceThatIsNotVga_HasNoVgaRegion()
    {
        VfioPciRig.Run(SchedulerMode.Real, rig =>
        {
            (int c, int g, int d) = rig.Open(VfioPciRig.Nic);
            Assert.That(rig.RegionInfo(d, VfioPciIndex.Vga, out _), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(rig.P.Pread(d, new byte[1], Off(VfioPciIndex.Vga, 0x3cc)), Is.EqualTo(Errno.EINVAL.Negative()));
            Assert.That(rig.P.Pwrite(d, new byte[1], Off(VfioPciIndex.Vga, 0xa0000)), Is.EqualTo(Errno.EINVAL.Negative()));
            rig.CloseAll((c, g, d));
        });
    }

    [Test]
    public void TheVgaFunction_HasItsOwnGroup_FoundAtRunTime()
    {
        VfioPciRig.Run(SchedulerMode.Real, rig =>
        {
            string bdf = VgaBdf(rig);
            PciDevice vga = rig.Dev(bdf);
            Assert.That(vga.Identity.Class, Is.EqualTo(0x030000));
            Assert.That(vga.IommuGroup!.Devices, Has.Count.EqualTo(1), "alone behind an ACS root port");
            Assert.That(rig.GroupId(bdf), Is.GreaterThan(12), "after the groups 0-12 of the machine's other functions");
            Assert.That(rig.M.Memory.IsRam(PhysMem.LegacyVgaStart >> 12), Is.False, "the legacy window is no RAM");
        });
    }
}
