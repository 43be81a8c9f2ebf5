//! The arithmetic of a scenario: how many bots a run needs, which of them join late (the last
//! `late_per_room` of each room: they send nothing and must still receive every message of
//! their room), and how many sends, acks and deliveries it owes, checked against overflow once
//! so that nothing later can overflow.

use anyhow::{Context, bail};

/// The shape of one run (the same for every transport).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub rooms: u32,
    pub users_per_room: u32,
    /// Members of each room that join only once the measured window began, and send nothing.
    pub late_per_room: u32,
    /// Unmeasured messages each user sends first.
    pub warmup: u32,
    /// Measured messages each user sends after the warmup.
    pub messages: u32,
}

impl Plan {
    /// A plan whose totals all fit (sends plus deliveries in a `u64`, bots in a `usize`).
    pub fn new(
        rooms: u32,
        users_per_room: u32,
        warmup: u32,
        messages: u32,
    ) -> anyhow::Result<Plan> {
        let plan = Plan {
            rooms,
            users_per_room,
            late_per_room: 0,
            warmup,
            messages,
        };
        if rooms == 0 || users_per_room == 0 || messages == 0 {
            bail!("a scenario needs at least one room, one user per room and one message");
        }
        warmup
            .checked_add(messages)
            .context("--warmup plus --messages is too large")?;
        usize::try_from(plan.bots()).context("too many bots for this machine")?;
        plan.bots()
            .checked_mul(u64::from(plan.sends_per_bot()))
            .and_then(|sends| sends.checked_mul(u64::from(users_per_room) + 1))
            .context("the scenario is too large to count")?;
        Ok(plan)
    }

    /// The same plan with `late` members of each room joining late; at least one member of
    /// each room must be on time to send.
    pub fn with_late(self, late: u32) -> anyhow::Result<Plan> {
        if late >= self.users_per_room {
            bail!(
                "{late} late joiners per room leave no member of a {}-member room to send",
                self.users_per_room
            );
        }
        Ok(Plan {
            late_per_room: late,
            ..self
        })
    }

    /// Bots (users) in all rooms.
    pub fn bots(&self) -> u64 {
        u64::from(self.rooms) * u64::from(self.users_per_room)
    }

    /// Messages each bot sends, warmup included.
    pub fn sends_per_bot(&self) -> u32 {
        self.warmup.saturating_add(self.messages)
    }

    /// Bots that send (those on time).
    pub fn senders(&self) -> u64 {
        u64::from(self.rooms) * u64::from(self.users_per_room - self.late_per_room)
    }

    /// Messages all bots send.
    pub fn sends(&self) -> u64 {
        self.senders()
            .saturating_mul(u64::from(self.sends_per_bot()))
    }

    /// Deliveries owed: every message to every member of its room, its author included.
    pub fn deliveries(&self) -> u64 {
        self.sends().saturating_mul(u64::from(self.users_per_room))
    }

    /// The room (0-based) of bot number `bot`: bots fill the rooms in turn.
    pub fn room_of(&self, bot: usize) -> usize {
        bot / self.users_per_room as usize
    }

    /// Whether bot number `bot` joins late (the last `late_per_room` of its room).
    pub fn is_late(&self, bot: usize) -> bool {
        let place = bot % self.users_per_room as usize;
        place >= (self.users_per_room - self.late_per_room) as usize
    }

    /// Messages each member of a room receives: every one its senders send.
    pub fn sends_per_room(&self) -> u64 {
        u64::from(self.users_per_room - self.late_per_room)
            .saturating_mul(u64::from(self.sends_per_bot()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_what_a_scenario_owes() {
        let plan = Plan::new(2, 3, 2, 10).unwrap();
        assert_eq!(plan.bots(), 6);
        assert_eq!(plan.sends_per_bot(), 12);
        assert_eq!(plan.sends(), 72);
        // Each of the 72 messages reaches the 3 members of its room, the author included.
        assert_eq!(plan.deliveries(), 216);
        assert_eq!(
            (plan.room_of(0), plan.room_of(2), plan.room_of(3)),
            (0, 0, 1)
        );

        let default = Plan::new(4, 8, 0, 100).unwrap();
        assert_eq!((default.sends(), default.deliveries()), (3_200, 25_600));
        let single = Plan::new(1, 1, 0, 1).unwrap();
        assert_eq!((single.sends(), single.deliveries()), (1, 1));
    }

    #[test]
    fn late_joiners_send_nothing_and_receive_everything() {
        // 2 rooms of 4, the last member of each joining late: 6 senders of 10 messages.
        let plan = Plan::new(2, 4, 0, 10).unwrap().with_late(1).unwrap();
        assert_eq!((plan.bots(), plan.senders(), plan.sends()), (8, 6, 60));
        // Each message reaches all 4 members of its room, the late one included.
        assert_eq!(plan.deliveries(), 240);
        assert_eq!(plan.sends_per_room(), 30);
        let late: Vec<usize> = (0..8).filter(|&b| plan.is_late(b)).collect();
        assert_eq!(late, [3, 7]);
        assert!(Plan::new(2, 4, 0, 10).unwrap().with_late(4).is_err());
        assert!(!Plan::new(1, 1, 0, 1).unwrap().is_late(0));
    }

    #[test]
    fn refuses_empty_and_uncountable_scenarios() {
        assert!(Plan::new(0, 8, 0, 100).is_err());
        assert!(Plan::new(4, 0, 0, 100).is_err());
        assert!(Plan::new(4, 8, 5, 0).is_err());
        assert!(Plan::new(1, 1, u32::MAX, 1).is_err());
        assert!(Plan::new(u32::MAX, u32::MAX, 0, u32::MAX).is_err());
    }
}
